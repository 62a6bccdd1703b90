"""The seven strategies' training steps on the chip model, both study models (run by hand; docs/device.md).

    python benchmarks/device_strategies.py     # markdown table: peak L2, trained parameters, samples/s, energy

Program ``exported``, one step of 8 samples, the study's default shapes; ``sparse`` with the layers
``--budget-kb`` picks by default (``FinetuneConfig.sparse_budget_kb``, deepest first without layer scores)
and with its deepest layer alone; ``lora`` at ``FinetuneConfig.lora_rank``.
"""

from __future__ import annotations

import torch

from biotrain.adaptation.finetune import FinetuneConfig
from biotrain.adaptation.sparse import pick_order, select_layers
from biotrain.device import estimate_step
from biotrain.models import build_model
from biotrain.models.layers import weight_layers

MODELS = {"MI-BMINet (EEG)": ("mi_bminet", 8, 400, 2, dict(temporal_kernel_s=0.32, depthwise_kernel_s=0.04, sfreq=200)),
          "EpiDeNet (EOG)": ("epidenet", 3, 1000, 11, dict(sfreq=500))}


def model(key: str, strategy: str):
    name, c, t, k, kw = MODELS[key]
    torch.manual_seed(0)
    return build_model(name, c, t, k, norm="group" if strategy == "edge" else "batch", **kw)


def main() -> None:
    torch.set_num_threads(1)
    print("| model | strategy | trains | peak L2 | trained params | samples/s | energy / sample |")
    print("|---|---|---|---|---|---|---|")
    for key in MODELS:
        base = model(key, "bias")
        order = pick_order(list(weight_layers(base)), None)

        def peak(layers):
            return estimate_step(base, "sparse", program="exported", check=False, layers=layers).peak_l2_bytes

        picked = select_layers(order, peak, int(FinetuneConfig.sparse_budget_kb * 1000))
        rows = [("last_layer", {}, "classifier"), ("full", {}, "all"), ("edge", {}, "all (GroupNorm)"),
                ("bias", {}, "norm scale/shift, biases, classifier"),
                ("sparse", {"layers": picked}, f"classifier + {', '.join(picked)} (budget "
                                                 f"{FinetuneConfig.sparse_budget_kb:g} kB)"),
                ("sparse", {"layers": (order[0],)}, f"classifier + {order[0]}"),
                ("lora", {"rank": FinetuneConfig.lora_rank}, "")]
        for strategy, kw, what in rows:
            est = estimate_step(model(key, strategy), strategy, program="exported", check=False, **kw)
            if strategy == "lora":
                what = f"rank-{est.rank} adapters of {', '.join(est.adapted)}"
            print(f"| {key} | `{strategy}` | {what} | {est.peak_l2_bytes / 1e3:.1f} kB | {est.n_trainable} | "
                  f"{est.samples_per_s:.1f} | {est.energy_mj_per_sample:.3f} mJ |")


if __name__ == "__main__":
    main()
