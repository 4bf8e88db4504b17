"""The gallery command writes every PNG it promises (tiny fits)."""

import pytest

from bayesgmm import gallery


@pytest.mark.slow
def test_gallery_smoke_writes_every_file(tmp_path):
    # Compiling the NUTS and SVI models of three data sets takes minutes: slow suite.
    assert gallery.main([str(tmp_path), "--smoke"]) == 0
    written = sorted(p.name for p in tmp_path.glob("*.png"))
    assert written == sorted(gallery.FILES)
    assert all((tmp_path / name).stat().st_size > 5_000 for name in written)


def test_gallery_files_are_named_once():
    assert len(set(gallery.FILES)) == len(gallery.FILES)
    assert all(name.endswith(".png") for name in gallery.FILES)
