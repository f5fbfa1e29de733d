"""Code shared by every service: settings, errors, clock, logging, web helpers. Imports no service."""
