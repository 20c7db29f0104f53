"""The catalog service: products and categories of each tenant (CONTRACT.md §3), product events on
`catalog.products.v1` (§4) through the transactional outbox."""
