import pytest


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every data test writes derived files (VOC conversions, label caches) under its own tmp folder."""
    cache = tmp_path / "_cache"
    monkeypatch.setenv("YOLO_CACHE_DIR", str(cache))
    return cache
