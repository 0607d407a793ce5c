"""Datasets: clean training patches, paired evaluation folders, synthetic test sets.

- :class:`CleanPatchDataset` - random clean patches for training; degrade each batch with
  :class:`interir.degradations.DegradationPipeline` in the training loop.
- :class:`PairedImageDataset` - ``input/target``, ``rain/norain`` (Rain100H) and many-to-one
  ``hazy/<scene>_<k>`` -> ``clear/<scene>`` (SOTS) folders.
- :class:`DepthImageDataset` - clean views with a disparity map (Middlebury layout), for haze on
  real depth ([ours]).
- :class:`SyntheticPairDataset`, :func:`synthesize_suite`, :func:`load_synthetic_suite` - the
  seeded seven-combination test sets (``interir synth``).
"""

from interir.data.depth import DepthImageDataset
from interir.data.paired import (
    LAYOUTS,
    ImagePair,
    PairedImageDataset,
    collate_pairs,
    detect_layout,
    find_pairs,
)
from interir.data.patches import CleanPatchDataset, pad_to_min_size, read_exclusion_list
from interir.data.synthetic import (
    CBSD68_MDIR_SEED,
    MANIFEST_FORMAT,
    MANIFEST_VERSION,
    SyntheticPairDataset,
    SyntheticSuite,
    item_seed,
    load_synthetic_suite,
    quantize8,
    synthesize_suite,
)

__all__ = [
    "CBSD68_MDIR_SEED",
    "LAYOUTS",
    "MANIFEST_FORMAT",
    "MANIFEST_VERSION",
    "CleanPatchDataset",
    "DepthImageDataset",
    "ImagePair",
    "PairedImageDataset",
    "SyntheticPairDataset",
    "SyntheticSuite",
    "collate_pairs",
    "detect_layout",
    "find_pairs",
    "item_seed",
    "load_synthetic_suite",
    "pad_to_min_size",
    "quantize8",
    "read_exclusion_list",
    "synthesize_suite",
]
