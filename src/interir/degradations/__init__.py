"""Seeded synthetic degradations: haze, rain streaks, Gaussian noise and their pipeline.

Each degradation is a small ``nn.Module`` taking a clean batch ``(B, 3, H, W)`` in [0, 1] and
explicit per-image parameters; drawing the parameters is separate (``sample_*_params`` and
:meth:`DegradationPipeline.sample`, from a seeded ``torch.Generator``).
"""

from interir.degradations.haze import (
    Haze,
    HazeParams,
    HazeSampling,
    PATCH_DEPTH_MODES,
    patch_depth,
    pseudo_depth,
    rescale_depth,
    sample_haze_params,
    sky_mask,
)
from interir.degradations.noise import GaussianNoise, NoiseParams, sample_noise_params
from interir.degradations.pipeline import (
    COMBINATIONS,
    DEFAULT_MAX_LEVELS,
    DEGRADATIONS,
    RECORD_FIELDS,
    DegradationParams,
    DegradationPipeline,
    canonical_combination,
    parse_combinations,
    parse_level_powers,
    parse_levels,
)
from interir.degradations.rain import (
    RAIN_STYLES,
    LayeredRainSampling,
    Rain,
    RainMix,
    RainParams,
    RainSampling,
    layered_kernel,
    layered_rain,
    rain_sampling_for,
    sample_rain_params,
    streak_kernel,
    streak_layer,
)

__all__ = [
    "COMBINATIONS",
    "DEFAULT_MAX_LEVELS",
    "DEGRADATIONS",
    "RECORD_FIELDS",
    "DegradationParams",
    "DegradationPipeline",
    "GaussianNoise",
    "Haze",
    "HazeParams",
    "HazeSampling",
    "NoiseParams",
    "PATCH_DEPTH_MODES",
    "sky_mask",
    "RAIN_STYLES",
    "LayeredRainSampling",
    "Rain",
    "RainMix",
    "RainParams",
    "RainSampling",
    "canonical_combination",
    "parse_combinations",
    "parse_level_powers",
    "parse_levels",
    "patch_depth",
    "pseudo_depth",
    "layered_kernel",
    "layered_rain",
    "rain_sampling_for",
    "rescale_depth",
    "sample_haze_params",
    "sample_noise_params",
    "sample_rain_params",
    "streak_kernel",
    "streak_layer",
]
