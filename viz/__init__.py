"""Viz: self-hosted, privacy-first, cross-domain web analytics, consent and tag platform."""

__version__ = "0.1.0"
