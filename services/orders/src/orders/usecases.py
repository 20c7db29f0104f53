"""What the orders service does: each use case is one unit of work on the tenant's database.

The story of placing an order, in one transaction: claim the idempotency key, price the items from
the product read model, count the order on its customer, take the next order number, write the
order and its `order.placed` event (outbox), store the response under the key, commit (tenantdb
then wakes the outbox relay).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import structlog
from events import outbox
from events.envelope import Envelope
from events.failures import InvalidEvent
from events.inbox import first_delivery
from events.models import ProductData
from pydantic import ValidationError
from servicekit.errors import AlreadyExists, Conflict, NotFound
from servicekit.pagination import Keyset, Timestamp, Uuid
from tenantdb import TenantDB, TenantUnavailable

from orders import domain, repository, schemas

log = structlog.get_logger("orders")

CREATE_ORDER_SCOPE = "orders.create"
PRODUCTS_CONSUMER = "orders.products"
PRODUCT_EVENTS = frozenset({"product.created", "product.updated", "product.deleted"})
# Newest first: (created_at DESC, id DESC).
NEWEST_ORDERS: Keyset[Any] = Keyset("orders", (Timestamp(), Uuid()), lambda row: (row.created_at, row.id))


@dataclass(frozen=True)
class Replayable:
    """A response that a retry with the same Idempotency-Key gets again, byte for byte in JSON."""

    status_code: int
    body: dict[str, Any]


def request_hash(body: schemas.Request) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _order(row: Any) -> schemas.Order:
    return schemas.Order.model_validate(row, from_attributes=True)


class OrdersService:
    def __init__(self, tdb: TenantDB) -> None:
        self.tdb = tdb

    # customers

    async def create_customer(self, tenant_id: uuid.UUID, body: schemas.CustomerCreate) -> schemas.Customer:
        async with self.tdb.unit_of_work(tenant_id) as uow:
            row = await repository.insert_customer(uow.connection, body.model_dump())
            if row is None:
                raise AlreadyExists(f"a customer with email {body.email} already exists", field="email")
            await uow.commit()
        return schemas.Customer.model_validate(row, from_attributes=True)

    async def get_customer(self, tenant_id: uuid.UUID, customer_id: uuid.UUID) -> schemas.Customer:
        async with self.tdb.unit_of_work(tenant_id, readonly=True) as uow:
            row = await repository.get_customer(uow.connection, customer_id)
        if row is None:
            raise NotFound(f"customer {customer_id} not found")
        return schemas.Customer.model_validate(row, from_attributes=True)

    # orders

    async def place_order(
        self, tenant_id: uuid.UUID, body: schemas.OrderCreate, idempotency_key: str | None
    ) -> Replayable:
        async with self.tdb.unit_of_work(tenant_id) as uow:
            connection = uow.connection
            key_id: uuid.UUID | None = None
            if idempotency_key is not None:
                digest = request_hash(body)
                key_id = await repository.claim_idempotency_key(
                    connection, CREATE_ORDER_SCOPE, idempotency_key, digest
                )
                if key_id is None:
                    return await self._replay(connection, idempotency_key, digest)

            requested = [(item.product_id, item.quantity) for item in body.items]
            products = await repository.products_by_id(uow.driver, (pid for pid, _ in requested))
            lines = domain.price_lines(requested, products)  # ProductsUnavailable: 422 naming the items
            totals = domain.compute_totals(lines)  # AmountTooLarge: 422

            order = {
                "id": uuid.uuid4(),
                "customer_email": body.customer_email,
                "status": domain.PENDING,
                "subtotal_amount": totals.subtotal,
                "tax_amount": totals.tax,
                "shipping_amount": totals.shipping,
                "discount_amount": totals.discount,
                "total_amount": totals.total,
                "currency": body.currency,
                "items": [
                    schemas.OrderItem(
                        product_id=line.product_id,
                        name=line.name,
                        sku=line.sku,
                        quantity=line.quantity,
                        unit_price=line.unit_price,
                        line_total=line.line_total,
                    ).model_dump(mode="json")
                    for line in lines
                ],
                "shipping_address": body.shipping_address,
                "billing_address": body.billing_address,
                "notes": body.notes,
            }
            # Everything above takes no lock; from here on the tenant's other orders wait for our commit.
            row = await repository.place_order_for_known_customer(connection, order)
            if row is None:  # a new customer, or the tenant's first order: step by step
                customer_id = await repository.add_order_to_customer(
                    connection, body.customer_email, totals.total
                )
                number, created_at = await repository.next_order_number(connection)
                row = await repository.insert_order(
                    connection,
                    order
                    | {
                        "order_number": str(number),
                        "customer_id": customer_id,
                        "created_at": created_at,
                        "updated_at": created_at,
                    },
                )
            event = domain.order_placed(
                tenant_id,
                order_id=row.id,
                order_number=row.order_number,
                customer_email=row.customer_email,
                customer_id=row.customer_id,
                currency=row.currency,
                totals=totals,
                lines=lines,
                created_at=row.created_at,
            )
            await outbox.record(connection, domain.TOPIC, event)
            if key_id is not None:  # the stored response must commit with the order
                response = Replayable(201, _order(row).model_dump(mode="json"))
                await repository.save_idempotent_response(
                    connection, key_id, response.status_code, response.body
                )
                await uow.commit()
                return response
            await uow.commit()
        return Replayable(201, _order(row).model_dump(mode="json"))  # built after the locks are gone

    async def _replay(self, connection: Any, key: str, digest: str) -> Replayable:
        stored = await repository.get_idempotency_key(connection, CREATE_ORDER_SCOPE, key)
        if stored is None:  # the holder rolled back between our insert and this read: rare
            raise Conflict("a request with this Idempotency-Key is in progress; retry", retryable=True)
        if stored.request_hash != digest:
            raise Conflict("this Idempotency-Key was used with a different request body")
        return Replayable(stored.status_code, stored.response)

    async def get_order(self, tenant_id: uuid.UUID, order_id: uuid.UUID) -> schemas.Order:
        async with self.tdb.unit_of_work(tenant_id, readonly=True) as uow:
            row = await repository.get_order(uow.connection, order_id)
        if row is None:
            raise NotFound(f"order {order_id} not found")
        return _order(row)

    async def list_orders(
        self,
        tenant_id: uuid.UUID,
        *,
        status: str | None,
        customer_email: str | None,
        limit: int,
        cursor: str | None,
    ) -> schemas.OrderPage:
        after = NEWEST_ORDERS.decode(cursor)
        async with self.tdb.unit_of_work(tenant_id, readonly=True) as uow:
            rows = await repository.list_orders(
                uow.connection, status=status, customer_email=customer_email, after=after, limit=limit + 1
            )
        page, next_cursor = NEWEST_ORDERS.page(rows, limit)
        return schemas.OrderPage(items=[_order(row) for row in page], next_cursor=next_cursor)

    async def change_status(self, tenant_id: uuid.UUID, order_id: uuid.UUID, status: str) -> schemas.Order:
        async with self.tdb.unit_of_work(tenant_id) as uow:
            current = await repository.get_order(uow.connection, order_id, for_update=True)
            if current is None:
                raise NotFound(f"order {order_id} not found")
            domain.check_transition(current.status, status)  # InvalidTransition: 409 with current_status
            row = await repository.set_order_status(uow.connection, order_id, status)
            event = domain.order_status_changed(
                tenant_id,
                order_id=row.id,
                order_number=row.order_number,
                old_status=current.status,
                new_status=row.status,
                updated_at=row.updated_at,
            )
            await outbox.record(uow.connection, domain.TOPIC, event)
            await uow.commit()
        return _order(row)

    # the product read model (catalog.products.v1)

    async def apply_product_event(self, envelope: Envelope) -> str:
        """Bring `order_products` up to the event; what happened, for the logs and metrics.

        Once per event id (inbox, same transaction), and never back to an older version (events of a
        product may arrive out of order after a rebalance or a redelivery). A suspended tenant's
        events are applied too: they happened in the catalog, and a suspension can be undone; a
        deleted tenant's are skipped (deletion is final, and its database may be dropped). Failures
        propagate to the consumer middleware (events.dead_letter), which waits out transient ones
        and dead-letters the rest (an unknown tenant, malformed data).
        """
        if envelope.event_type not in PRODUCT_EVENTS:
            return "ignored"
        try:
            product = ProductData.model_validate(envelope.data)
        except ValidationError as error:
            raise InvalidEvent(f"{envelope.event_type} {envelope.event_id}: {error}") from error
        version_at = product.updated_at
        if version_at.tzinfo is None:
            version_at = version_at.replace(tzinfo=UTC)
        try:
            async with self.tdb.unit_of_work(envelope.tenant_id, allow_suspended=True) as uow:
                if not await first_delivery(uow.connection, PRODUCTS_CONSUMER, envelope.event_id):
                    return "duplicate"
                changed = await repository.upsert_product(
                    uow.connection,
                    {
                        "id": product.product_id,
                        "name": product.name,
                        "sku": product.sku,
                        "price": product.price,
                        "status": product.status,
                        "deleted": product.deleted or envelope.event_type == "product.deleted",
                        "version_at": version_at,
                    },
                )
                await uow.commit()
        except TenantUnavailable as error:  # deleted: its data (a dedicated database) may be gone
            log.info("product event of a deleted tenant skipped", error=str(error))
            return "skipped_deleted"
        return "applied" if changed else "stale"
