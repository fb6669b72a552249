"""Dataset loaders for the papers' published formats, offline stand-ins and procedural generators.

Loaders return ``dict[str, ArrayDataset]`` (splits or environments), generators one
``ArrayDataset``; each carries a ``DatasetRef(name, provenance)``. ``paper_root(ctx, name)``
finds a dataset under the data root (``--data-root`` / ``$SUITE_DATA``), writing a tiny fixture
in dry runs; ``catalog.list_datasets`` / ``catalog.check`` back ``suite data list | check``.
"""
from suite.data.base import ArrayDataset, Splits
from suite.data.cache import cached


def paper_root(ctx_or_root, name: str, dry_run: bool | None = None):  # noqa: ANN001 (lazy import)
    """See :func:`suite.data.catalog.paper_root`."""
    from suite.data.catalog import paper_root as _paper_root

    return _paper_root(ctx_or_root, name, dry_run)


def load_dataset(ctx_or_root, name: str, dry_run: bool | None = None, **kw):  # noqa: ANN001
    """See :func:`suite.data.catalog.load_dataset`."""
    from suite.data.catalog import load_dataset as _load

    return _load(ctx_or_root, name, dry_run, **kw)


__all__ = ["ArrayDataset", "Splits", "cached", "paper_root", "load_dataset"]
