"""Foundation loaders, one per dataset, and the question templates.

Other code uses:

- :func:`load` -- stream ``Sample | Reject`` from a :class:`~mmat.config.SourceConfig`;
- :func:`shard_of` -- the deterministic shard of a sample id;
- :func:`check_images` / :func:`check_images_or_reject` -- the lazy image check of a sample.
"""

from mmat.sources.checks import check_images, check_images_or_reject
from mmat.sources.loading import load, open_source
from mmat.sources.sharding import make_sample_id, shard_of

__all__ = ["check_images", "check_images_or_reject", "load", "make_sample_id", "open_source", "shard_of"]
