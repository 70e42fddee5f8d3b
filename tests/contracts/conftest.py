from __future__ import annotations

from tests.query.shop_data import shop, shop_db, shop_path  # noqa: F401
