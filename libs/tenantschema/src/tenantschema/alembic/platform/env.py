from tenantschema.migrations import run_env

run_env()
