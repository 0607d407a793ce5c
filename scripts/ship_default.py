"""Ship a training run as the embedded default model (or as another named pretrained model).

    .venv/bin/python scripts/ship_default.py runs/default-small
    .venv/bin/python scripts/ship_default.py runs/rematch-nafnet-small --name eb-nafnet-small \
        --card MODEL_CARD_REMATCH.md

Writes src/interir/weights/default.safetensors (+ .json) and records its sha256 in
src/interir/weights/registry.json. Update MODEL_CARD.md with the run's figures afterwards.
"""

import argparse
import json
from pathlib import Path

from interir.loading import ship_pretrained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="run folder (its best checkpoint is used) or checkpoint path")
    parser.add_argument("--name", default="default", help="shipped name (eb-* for the rematch models)")
    parser.add_argument("--card", default="MODEL_CARD.md", help="model card file in src/interir/weights/")
    args = parser.parse_args()
    summary_file = Path(args.run) / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    # The best checkpoint is what ships; its step, not the run's last, says how long it trained.
    steps = (summary.get("best") or {}).get("step", summary.get("step"))
    path = ship_pretrained(args.run, args.name, source_run=str(args.run), steps=steps, card=args.card)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
