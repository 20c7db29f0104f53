"""tenancy: the tenant registry (platform database) and subscription plans."""
