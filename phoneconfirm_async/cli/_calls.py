"""``phoneconfirm place`` and ``phoneconfirm verify``: one request each, one result row."""

from __future__ import annotations

from typing import Any

import click

from phoneconfirm_async import PhoneConfirmError
from phoneconfirm_async.cli._common import (
    credential_options,
    credentials_from,
    exit_with_row,
    open_client,
)
from phoneconfirm_async.cli._io import place_row, verify_row


@click.command()
@click.argument("phone")
@click.option(
    "--country-code",
    default=None,
    help="1-3 digits, `+` allowed; optional for an international PHONE (`+15555550123`, "
    "with the `numbers` extra).",
)
@click.option("--code", required=True, help="The code to speak: 1-10 letters or digits.")
@click.option(
    "--format",
    "response_format",
    type=click.Choice(["json", "xml"]),
    default="json",
    show_default=True,
    help="The format the service answers in.",
)
@credential_options
def place(
    phone: str, country_code: str | None, code: str, response_format: str, **kw: Any
) -> None:
    """Place one call; print the result row; exit 0 when the call was placed."""
    credentials = credentials_from(kw)

    async def run() -> dict[str, Any]:
        async with open_client(credentials, response_format=response_format) as client:
            fields = {"phone": phone, "country_code": country_code}
            try:
                result = await client.place_call(phone, country_code=country_code, code=code)
            except PhoneConfirmError as exc:
                return place_row(1, fields, error=exc)
            return place_row(1, fields, result=result)

    exit_with_row(run, "placed")


@click.command()
@click.argument("transaction_number")
@click.option(
    "--code",
    required=True,
    help="The code the person typed (spaces and dashes allowed).",
)
@credential_options
def verify(transaction_number: str, code: str, **kw: Any) -> None:
    """Verify one code; print the result row; exit 0 when the code was verified."""
    credentials = credentials_from(kw)

    async def run() -> dict[str, Any]:
        async with open_client(credentials) as client:
            fields = {"transaction_number": transaction_number}
            try:
                result = await client.verify_code(transaction_number, code)
            except PhoneConfirmError as exc:
                return verify_row(1, fields, error=exc)
            return verify_row(1, fields, result=result)

    exit_with_row(run, "verified")
