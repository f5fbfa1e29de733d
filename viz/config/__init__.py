"""viz-config (port 3002): sites, tenants and API tokens; the admin and internal HTTP APIs."""
