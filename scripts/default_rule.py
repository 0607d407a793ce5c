"""Apply the rule that decides whether a candidate ships as `default` (issue 26).

    .venv/bin/python scripts/default_rule.py runs/cpu-default-stage7/vs-shipped.json

Reads what ``scripts/validate_model.py --json`` wrote, the shipped models first and the candidate
last, and exits 0 when the candidate ships: its mean PSNR over all validation pairs is above every
shipped model's, and on no validation set is it more than ``--margin`` dB (1.0) below the best
shipped model on that set. The rule was written before the candidate was scored
(docs/recipes.md, "One default on real data"); exit 1 otherwise, with the reason.
"""

import argparse
import json
import sys
from pathlib import Path


def verdict(scores: list[dict], margin: float) -> tuple[bool, list[str]]:
    """``(ships, lines)``: the decision and one line per comparison made."""
    *shipped, candidate = scores
    lines, ok = [], True
    best_mean = max(s["psnr"] for s in shipped)
    ok &= candidate["psnr"] > best_mean
    lines.append(f"mean: candidate {candidate['psnr']:.3f} dB vs best shipped {best_mean:.3f}"
                 f" -> {'above' if candidate['psnr'] > best_mean else 'NOT above'}")
    for name, value in candidate["sets"].items():
        floor = max(s["sets"][name] for s in shipped) - margin
        ok &= value >= floor
        lines.append(f"{name}: candidate {value:.3f} dB, floor {floor:.3f} -> {'ok' if value >= floor else 'BELOW'}")
    return ok, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scores", type=Path, help="validate_model.py --json output (shipped models, then the candidate)")
    parser.add_argument("--margin", type=float, default=1.0, help="largest loss allowed on one set, dB")
    args = parser.parse_args()
    ships, lines = verdict(json.loads(args.scores.read_text()), args.margin)
    print("\n".join(lines))
    print("ships" if ships else "does not ship")
    sys.exit(0 if ships else 1)


if __name__ == "__main__":
    main()
