"""Haze -> rain -> noise pipeline over the seven MDIR combinations.

Sampling (:meth:`DegradationPipeline.sample`) and applying (:meth:`DegradationPipeline.apply`)
are separate: ``sample`` draws every per-image parameter from a seeded ``torch.Generator`` into a
:class:`DegradationParams`, and ``apply`` is a pure function of the clean batch and those
parameters (the rain and noise fields come from per-image seeds stored in the parameters).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from interir.degradations.common import check_batch
from interir.degradations.haze import Haze, HazeParams, HazeSampling, sample_haze_params
from interir.degradations.noise import GaussianNoise, NoiseParams, sample_noise_params
from interir.degradations.rain import (
    CLASSIC_FIELD_VALUES,
    STYLE_NAMES,
    LayeredRainSampling,
    Rain,
    RainMix,
    RainParams,
    RainSampling,
    rain_sampling_for,
    sample_rain_params,
)

__all__ = [
    "DEGRADATIONS",
    "COMBINATIONS",
    "DEFAULT_MAX_LEVELS",
    "RECORD_FIELDS",
    "DegradationParams",
    "DegradationPipeline",
    "canonical_combination",
    "combination_rank",
    "parse_combinations",
    "parse_levels",
    "parse_level_powers",
]

#: The three degradations, in the order they are applied.
DEGRADATIONS: tuple[str, ...] = ("haze", "rain", "noise")
#: The seven MDIR combinations (every non-empty subset of DEGRADATIONS).
COMBINATIONS: tuple[str, ...] = (
    "haze",
    "rain",
    "noise",
    "haze+rain",
    "haze+noise",
    "rain+noise",
    "haze+rain+noise",
)


def combination_rank(name: str) -> tuple[int, str]:
    """Sort key of the one combination order: ``COMBINATIONS`` (haze, rain, noise, haze+rain,
    ...), then unknown names alphabetically."""
    if name in COMBINATIONS:
        return COMBINATIONS.index(name), name
    return len(COMBINATIONS), name


#: Upper ends of the level ranges of the paper's MDIR set.
DEFAULT_MAX_LEVELS: dict[str, float] = {"haze": 150.0, "rain": 300.0, "noise": 50.0}
#: Keys of one record of :meth:`DegradationParams.to_records`, in manifest column order.
RECORD_FIELDS: tuple[str, ...] = (
    "combination",
    "haze_level",
    "rain_level",
    "noise_level",
    "haze_beta",
    "haze_airlight",
    "rain_angle",
    "rain_length",
    "rain_width",
    "rain_blend",
    "rain_seed",
    "noise_sigma",
    "noise_seed",
    "rain_style",
    "rain_layers",
    "rain_spread",
    "rain_blur",
    "rain_veil",
    "rain_falloff",
    "rain_density",
)
#: Record keys of the layered rain's own fields (``None`` for classic rain).
_LAYERED_RECORDS: tuple[str, ...] = (
    "rain_layers", "rain_spread", "rain_blur", "rain_veil", "rain_falloff", "rain_density",
)


def canonical_combination(name: str) -> str:
    """Normalise a combination name: ``"noise+Haze"`` -> ``"haze+noise"``.

    Raises:
        ValueError: empty, unknown or repeated parts.
    """
    parts = [p.strip().lower() for p in str(name).split("+")]
    bad = [p for p in parts if p not in DEGRADATIONS]
    if not parts or bad or len(set(parts)) != len(parts):
        raise ValueError(
            f"invalid combination {name!r}: use '+'-joined names from {DEGRADATIONS}, "
            f"e.g. one of {', '.join(COMBINATIONS)}"
        )
    return "+".join(d for d in DEGRADATIONS if d in parts)


def parse_combinations(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """Parse ``"haze,rain+noise"`` (or a list, or ``"all"``/None) into canonical names."""
    if spec is None:
        return COMBINATIONS
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    items = [s.strip() for s in items if s.strip()]
    if not items or items == ["all"]:
        return COMBINATIONS
    out: list[str] = []
    for s in items:
        c = canonical_combination(s)
        if c not in out:
            out.append(c)
    return tuple(out)


def parse_levels(spec: str | Mapping[str, float] | None) -> dict[str, float]:
    """Parse ``"haze=100,rain=200,noise=25"`` into ``{"haze": 100.0, ...}``."""
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        items = [(str(k), v) for k, v in spec.items()]
    else:
        items = []
        for part in spec.split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise ValueError(
                    f"invalid level {part!r}: write NAME=VALUE, e.g. haze=100,rain=200,noise=25"
                )
            k, v = part.split("=", 1)
            items.append((k, v))
    out: dict[str, float] = {}
    for k, v in items:
        k = k.strip().lower()
        if k not in DEGRADATIONS:
            raise ValueError(f"unknown degradation {k!r} in levels; use {', '.join(DEGRADATIONS)}")
        try:
            val = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"level for {k} must be a number, got {v!r}") from None
        if not math.isfinite(val) or val < 0:
            raise ValueError(f"level for {k} must be a finite number >= 0, got {val}")
        out[k] = val
    return out


def parse_level_powers(spec: float | Mapping[str, float]) -> dict[str, float]:
    """A level power for every degradation: one number for all, or a mapping (others get 1).

    Raises:
        ValueError: an unknown degradation, or a power that is not a finite number > 0.
    """
    if isinstance(spec, Mapping):
        bad = [k for k in spec if str(k).strip().lower() not in DEGRADATIONS]
        if bad:
            raise ValueError(
                f"unknown degradation {bad[0]!r} in level_power; use {', '.join(DEGRADATIONS)}"
            )
        out = {d: 1.0 for d in DEGRADATIONS}
        out.update({str(k).strip().lower(): float(v) for k, v in spec.items()})
    else:
        out = {d: float(spec) for d in DEGRADATIONS}
    for d, p in out.items():
        if not (math.isfinite(p) and p > 0):
            raise ValueError(f"level_power must be a finite number > 0, got {p} for {d}")
    return out


def _opt(value: Any, default: float) -> float:
    return default if value is None or value == "" else float(value)


#: What a record without the layered fields means (the classic values, see ``RainParams``).
_CLASSIC_RECORD_DEFAULTS: dict[str, float] = {
    f"rain_{k}": float(v) for k, v in CLASSIC_FIELD_VALUES.items() if k != "style"
}


def _rain_styles(records: Sequence[Mapping[str, Any]], device) -> torch.Tensor:
    """``(B,)`` int64 style codes of records; a missing or empty ``rain_style`` is classic."""
    codes = []
    for r in records:
        name = r.get("rain_style") or STYLE_NAMES[0]
        if name not in STYLE_NAMES:
            raise ValueError(
                f"unknown rain_style {name!r} in a record; expected one of {STYLE_NAMES}"
            )
        codes.append(STYLE_NAMES.index(name))
    return torch.tensor(codes, dtype=torch.int64, device=device)


@dataclass
class DegradationParams:
    """Everything drawn for a batch, per image.

    Attributes:
        combination: B combination names (e.g. ``"haze+noise"``).
        haze: haze levels (0 where inactive) and airlights.
        rain: rain levels (0 where inactive) and streak parameters.
        noise: noise levels (0 where inactive) and seeds.
    """

    combination: list[str]
    haze: HazeParams
    rain: RainParams
    noise: NoiseParams

    def __len__(self) -> int:
        return len(self.combination)

    @property
    def levels(self) -> torch.Tensor:
        """``(B, 3)`` levels in the order haze, rain, noise."""
        return torch.stack([self.haze.level, self.rain.level, self.noise.level], dim=1)

    def to(self, device) -> "DegradationParams":
        return DegradationParams(
            list(self.combination),
            self.haze.to(device),
            self.rain.to(device),
            self.noise.to(device),
        )

    def select(self, idx: Sequence[int] | torch.Tensor) -> "DegradationParams":
        """The parameters of a subset of the images."""
        idx_t = torch.as_tensor(idx, dtype=torch.long).view(-1)
        return DegradationParams(
            [self.combination[i] for i in idx_t.tolist()],
            self.haze.select(idx_t.to(self.haze.level.device)),
            self.rain.select(idx_t.to(self.rain.level.device)),
            self.noise.select(idx_t.to(self.noise.level.device)),
        )

    @staticmethod
    def cat(parts: Sequence["DegradationParams"]) -> "DegradationParams":
        """Concatenate parameters of several batches (same device)."""
        if not parts:
            raise ValueError("nothing to concatenate")
        n_rain = len(parts[0].rain._fields())

        def c(get):
            return torch.cat([get(p) for p in parts])

        return DegradationParams(
            [n for p in parts for n in p.combination],
            HazeParams(c(lambda p: p.haze.level), c(lambda p: p.haze.airlight)),
            RainParams(*(c(lambda p, i=i: p.rain._fields()[i]) for i in range(n_rain))),
            NoiseParams(c(lambda p: p.noise.level), c(lambda p: p.noise.seed)),
        )

    def to_records(self) -> list[dict[str, Any]]:
        """One plain dict per image (keys :data:`RECORD_FIELDS`), for manifests.

        Sub-parameters of a degradation whose level is 0 are ``None``, and so are the layered
        rain's own fields (``rain_layers`` ...) of classic rain; ``rain_style`` is a name of
        :data:`~interir.degradations.rain.STYLE_NAMES`.
        """
        cols = {
            "haze_level": self.haze.level,
            "rain_level": self.rain.level,
            "noise_level": self.noise.level,
            "haze_airlight": self.haze.airlight,
            "rain_angle": self.rain.angle,
            "rain_length": self.rain.length,
            "rain_width": self.rain.width,
            "rain_blend": self.rain.blend,
            "rain_seed": self.rain.seed,
            "noise_seed": self.noise.seed,
            "rain_style": self.rain.style,
        }
        cols.update({k: getattr(self.rain, k[len("rain_"):]) for k in _LAYERED_RECORDS})
        vals = {k: v.detach().cpu().tolist() for k, v in cols.items()}
        out = []
        for i, comb in enumerate(self.combination):
            h, r, n = vals["haze_level"][i], vals["rain_level"][i], vals["noise_level"][i]
            rec: dict[str, Any] = {
                "combination": comb,
                "haze_level": float(h),
                "rain_level": float(r),
                "noise_level": float(n),
                "haze_beta": float(h) / 1000.0 if h > 0 else None,
                "haze_airlight": float(vals["haze_airlight"][i]) if h > 0 else None,
            }
            for k in ("rain_angle", "rain_length", "rain_width", "rain_blend"):
                rec[k] = float(vals[k][i]) if r > 0 else None
            rec["rain_seed"] = int(vals["rain_seed"][i]) if r > 0 else None
            style = int(vals["rain_style"][i])
            rec["rain_style"] = STYLE_NAMES[style] if r > 0 else None
            for k in _LAYERED_RECORDS:
                rec[k] = float(vals[k][i]) if r > 0 and style > 0 else None
            if rec["rain_layers"] is not None:
                rec["rain_layers"] = int(round(rec["rain_layers"]))
            rec["noise_sigma"] = float(n) / 255.0 if n > 0 else None
            rec["noise_seed"] = int(vals["noise_seed"][i]) if n > 0 else None
            out.append({k: rec[k] for k in RECORD_FIELDS})
        return out

    @classmethod
    def from_records(
        cls, records: Iterable[Mapping[str, Any]], device: torch.device | str = "cpu"
    ) -> "DegradationParams":
        """Rebuild parameters from :meth:`to_records` output (or manifest rows read back).

        Applying the rebuilt parameters reproduces the degraded images exactly. Records written
        before the layered rain existed (no ``rain_style``) are classic rain.
        """
        recs = list(records)

        def col(key: str, default: float) -> torch.Tensor:
            return torch.tensor(
                [_opt(r.get(key), default) for r in recs], dtype=torch.float32, device=device
            )

        def seeds(key: str) -> torch.Tensor:
            vals = [int(r[key]) if r.get(key) not in (None, "") else 0 for r in recs]
            return torch.tensor(vals, dtype=torch.int64, device=device)

        return cls(
            [canonical_combination(r["combination"]) for r in recs],
            HazeParams(col("haze_level", 0.0), col("haze_airlight", 0.7)),
            RainParams(
                col("rain_level", 0.0),
                col("rain_angle", 0.0),
                col("rain_length", 20.0),
                col("rain_width", 1.0),
                col("rain_blend", 0.8),
                seeds("rain_seed"),
                _rain_styles(recs, device),
                *(col(k, _CLASSIC_RECORD_DEFAULTS[k]) for k in _LAYERED_RECORDS),
            ),
            NoiseParams(col("noise_level", 0.0), seeds("noise_seed")),
        )


class DegradationPipeline:
    """Seeded multi-degradation synthesis: haze, then rain, then noise, then clip to [0, 1].

    Args:
        combinations: combinations to draw from (uniformly per image); default all seven.
        max_levels: upper end of each level range; a level is drawn uniformly from (0, max]
            for every degradation in the image's combination and is 0 for the others.
        level_power: draw ``max * u**level_power`` with u uniform in (0, 1] instead ([ours]);
            1 (default) is the uniform draw, 2 puts half the levels below a quarter of the
            range (more lightly degraded images). A mapping (``{"noise": 3}``) sets it per
            degradation, 1 for those it does not name: nearly clean noise without lighter rain.
        clean_fraction: probability that an image is left clean ([ours]): it keeps its drawn
            combination name but every level is 0, so the network also learns to leave an
            undegraded photo alone. 0 (default) draws nothing extra.
        levels: fixed levels (e.g. ``{"haze": 100}``) used instead of drawing, for the
            degradations of the combination they name; others are still drawn.
        haze_sampling: ranges of the haze sub-parameters.
        rain_sampling: ranges of the rain sub-parameters, or a style name of
            :data:`~interir.degradations.rain.RAIN_STYLES` (``"classic"``, the default ranges,
            ``"sparse"``, ``"heavy"``, ``"varied"``, ``"benchmark"``; see
            :func:`~interir.degradations.rain.rain_sampling_for`).
        clip: clip the final result to [0, 1].
        rng_device: where the per-image rain/noise fields are drawn: ``"cpu"`` (bit-identical on
            any machine; default) or ``"same"`` (the batch's device: faster on GPU).

    Example:
        >>> pipe = DegradationPipeline()
        >>> g = torch.Generator().manual_seed(0)
        >>> degraded, params = pipe(clean, g)        # clean: (B, 3, H, W) in [0, 1]
        >>> params.to_records()[0]["combination"]
    """

    def __init__(
        self,
        combinations: str | Sequence[str] = COMBINATIONS,
        max_levels: Mapping[str, float] | None = None,
        levels: str | Mapping[str, float] | None = None,
        haze_sampling: HazeSampling = HazeSampling(),
        rain_sampling: RainSampling | LayeredRainSampling | RainMix | str = RainSampling(),
        clip: bool = True,
        rng_device: str = "cpu",
        level_power: float | Mapping[str, float] = 1.0,
        clean_fraction: float = 0.0,
    ) -> None:
        if not 0.0 <= clean_fraction < 1.0:
            raise ValueError(f"clean_fraction must be in [0, 1), got {clean_fraction}")
        self.level_powers = parse_level_powers(level_power)
        self.level_power = (float(level_power) if not isinstance(level_power, Mapping)
                            else dict(self.level_powers))
        self.clean_fraction = float(clean_fraction)
        self.combinations = parse_combinations(combinations)
        self.max_levels = dict(DEFAULT_MAX_LEVELS)
        if max_levels is not None:
            self.max_levels.update(parse_levels(max_levels))
        self.fixed_levels = parse_levels(levels)
        self.haze_sampling = haze_sampling
        self.rain_sampling = (
            rain_sampling_for(rain_sampling) if isinstance(rain_sampling, str) else rain_sampling
        )
        self.clip = clip
        if rng_device not in ("cpu", "same"):
            raise ValueError(f"rng_device must be 'cpu' or 'same', got {rng_device!r}")
        self.rng_device = rng_device
        self.haze = Haze()
        self.rain = Rain(rng_device=rng_device)
        self.noise = GaussianNoise(clip=False, rng_device=rng_device)

    def __repr__(self) -> str:
        return (
            f"DegradationPipeline(combinations={self.combinations}, max_levels={self.max_levels}, "
            f"levels={self.fixed_levels}, level_power={self.level_power}, "
            f"clean_fraction={self.clean_fraction})"
        )

    def sample(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        combination: str | None = None,
    ) -> DegradationParams:
        """Draw the parameters of ``batch_size`` images.

        Args:
            batch_size: number of images.
            generator: seeded generator (CPU or on ``device``); the global RNG when None.
            device: device of the returned tensors.
            combination: force one combination for every image (default: drawn uniformly from
                ``self.combinations``).

        Returns:
            The drawn :class:`DegradationParams`. The draw order is fixed, so the same generator
            state gives the same parameters.
        """
        b = int(batch_size)
        gdev = generator.device if generator is not None else torch.device("cpu")
        combo_idx = torch.randint(len(self.combinations), (b,), generator=generator, device=gdev)
        u = torch.rand(b, 3, generator=generator, device=gdev)
        # Drawn only when asked for, so that a pipeline without clean images keeps its draws.
        clean = torch.zeros(b, dtype=torch.bool, device=gdev)
        if self.clean_fraction > 0:
            clean = torch.rand(b, generator=generator, device=gdev) < self.clean_fraction
        if combination is not None:
            names = [canonical_combination(combination)] * b
        else:
            names = [self.combinations[i] for i in combo_idx.tolist()]
        lv = []
        for j, d in enumerate(DEGRADATIONS):
            active = torch.tensor([d in n.split("+") for n in names], device=gdev) & ~clean
            if d in self.fixed_levels:
                drawn = torch.full((b,), self.fixed_levels[d], device=gdev)
            else:
                drawn = self.max_levels[d] * (1.0 - u[:, j]) ** self.level_powers[d]  # in (0, max]
            lv.append(torch.where(active, drawn, torch.zeros_like(drawn)).float())
        haze = sample_haze_params(lv[0], generator, self.haze_sampling)
        rain = sample_rain_params(lv[1], generator, self.rain_sampling)
        noise = sample_noise_params(lv[2], generator)
        return DegradationParams(names, haze, rain, noise).to(device)

    def apply(
        self, clean: torch.Tensor, params: DegradationParams, depth: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Degrade a clean batch with given parameters (deterministic).

        Args:
            clean: ``(B, C, H, W)`` float in [0, 1], C = 3 (RGB) or 1 (grayscale).
            params: per-image parameters for the B images.
            depth: optional ``(B or 1, 1, H, W)`` depth for the haze (pseudo-depth otherwise).

        Returns:
            ``(B, C, H, W)`` degraded batch in [0, 1] (when ``clip``).
        """
        check_batch(clean, "clean batch")
        if len(params) != clean.shape[0]:
            raise ValueError(
                f"params describe {len(params)} images but the batch has {clean.shape[0]}"
            )
        params = params.to(clean.device)
        x = clean
        if bool((params.haze.level > 0).any()):
            x = self.haze(x, params.haze, depth)
        if bool((params.rain.level > 0).any()):
            x = self.rain(x, params.rain)
        if bool((params.noise.level > 0).any()):
            x = self.noise(x, params.noise)
        if x is clean:
            x = clean.clone()
        return x.clamp(0.0, 1.0) if self.clip else x

    def __call__(
        self,
        clean: torch.Tensor,
        generator: torch.Generator | None = None,
        depth: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, DegradationParams]:
        """Sample parameters for the batch and apply them: ``(degraded, params)``."""
        check_batch(clean, "clean batch")
        params = self.sample(clean.shape[0], generator, clean.device)
        return self.apply(clean, params, depth), params
