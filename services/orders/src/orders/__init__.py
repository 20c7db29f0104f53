"""The orders service: customers, orders and their events, over a read model of catalog products."""
