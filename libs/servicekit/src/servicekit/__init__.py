"""Pieces every service is built from, so that all services look the same inside."""
