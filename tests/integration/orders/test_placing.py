"""The one-statement path of placing an order writes nothing unless it can place the whole order."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from orders import repository
from sqlalchemy import func, select
from tenantschema.tables import customers, orders, sequences

from tests.integration.orders.conftest import NewClient, OrdersApp, random_email


def _order(email: str) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "customer_email": email,
        "status": "pending",
        "total_amount": Decimal("10.00"),
        "subtotal_amount": Decimal("10.00"),
        "tax_amount": Decimal(0),
        "shipping_amount": Decimal(0),
        "discount_amount": Decimal(0),
        "currency": "USD",
        "items": [],
        "shipping_address": None,
        "billing_address": None,
        "notes": "note",
    }


async def test_the_one_statement_path_needs_a_known_customer_and_a_sequence(
    orders_app: OrdersApp, new_tenant: NewClient
) -> None:
    tenant = await new_tenant()
    email = random_email()
    async with orders_app.tdb.unit_of_work(tenant.tenant_id) as uow:
        connection = uow.connection
        # The tenant's first order: no sequence row, no customer. Nothing is written, no number taken;
        # then a known customer but still no sequence: the customer is not counted either.
        assert await repository.place_order_for_known_customer(connection, _order(email)) is None
        customer_id = await repository.add_order_to_customer(connection, email, Decimal("5.00"))
        assert await repository.place_order_for_known_customer(connection, _order(email)) is None
        assert (await connection.execute(select(func.count()).select_from(orders))).scalar_one() == 0
        number, _ = await repository.next_order_number(connection)  # creates the sequence: 1001

        placed = await repository.place_order_for_known_customer(connection, _order(email))
        assert placed is not None
        assert (placed.order_number, placed.customer_id, placed.notes) == (
            str(number + 1),
            customer_id,
            "note",
        )
        assert placed.created_at == placed.updated_at
        customer = (await connection.execute(select(customers).where(customers.c.email == email))).one()
        assert (customer.total_orders, customer.total_spent) == (2, Decimal("15.00"))
        assert customer.id == customer_id  # counted, not rewritten
        assert (await connection.execute(select(sequences.c.last_value))).scalar_one() == number + 1

        # Another customer of the same tenant is unknown: the sequence is left alone.
        assert await repository.place_order_for_known_customer(connection, _order(random_email())) is None
        assert (await connection.execute(select(sequences.c.last_value))).scalar_one() == number + 1
