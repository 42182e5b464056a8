from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from openvrm.vendor import VendorConfig, VendorKit, create_vendor_app
from tests.vendor.helpers import BASE, config


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def vendor_config(tmp_path: Path) -> VendorConfig:
    return config(tmp_path)


@pytest.fixture
def kit(vendor_config: VendorConfig) -> Iterator[VendorKit]:
    k = VendorKit(vendor_config)
    yield k
    k.close()


@pytest.fixture
def app(vendor_config: VendorConfig, kit: VendorKit) -> FastAPI:
    return create_vendor_app(vendor_config, kit=kit)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        yield c
