"""What one paper trial of Fig. 4 would cost, from the measured throughputs (benchmarks 1-3).

The protocol's numbers are read from conf/schedule/paper_cifar10.yaml (Sec. 4.1), not restated.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.harness import Results
from benchmarks.runner_side import compose_config, default_format, formats

CIFAR10_TEST_IMAGES = 10_000  # the CIFAR-10 test split, evaluated after every cycle (Sec. 4.1)
FIG4_SAMPLERS, FIG4_TRIALS = 5, 5  # Fig. 4: random, entropy, core-set, learn loss mse, learn loss; 5 trials each


@dataclass(frozen=True)
class PaperProtocol:
    cycles: int
    initial_size: int
    query_size: int
    epochs: int
    subset_size: int
    test_size: int = CIFAR10_TEST_IMAGES

    @property
    def training_images(self) -> int:
        """epochs × (labeled set of every cycle): 200 × (1k + … + 10k) = 11,000,000."""
        return self.epochs * sum(self.initial_size + self.query_size * c for c in range(self.cycles))

    def hours(self, train_ips: float, score_ips: float, eval_ips: float) -> float:
        return (
            self.training_images / train_ips
            + self.cycles * self.test_size / eval_ips
            + (self.cycles - 1) * self.subset_size / score_ips
        ) / 3600


def paper_protocol() -> PaperProtocol:
    s = compose_config(["schedule=paper_cifar10"]).schedule
    return PaperProtocol(int(s.cycles), int(s.initial_size), int(s.query_size), int(s.epochs), int(s.subset_size))


def projection(args, res: Results) -> None:
    f, dflt = res.facts, default_format(args)
    sides = {}
    train = f.get(f"epoch_ips/w64/{dflt}") or f.get(f"train_ips/w64/{dflt}/ll")
    score, evl = f.get(f"score_ips/w64/{dflt}"), f.get(f"eval_ips/w64/{dflt}")
    if train and score and evl:
        sides["runner (default runtime)"] = (train, score, evl)
    best = max(formats(args), key=lambda x: f.get(f"epoch_ips/w64/{x[0]}", 0))[0]
    if best != dflt and f.get(f"epoch_ips/w64/{best}") and f.get(f"score_ips/w64/{best}"):
        sides[f"runner ({best})"] = (f[f"epoch_ips/w64/{best}"], f[f"score_ips/w64/{best}"], f[f"eval_ips/w64/{best}"])
    if not sides:
        return
    p = paper_protocol()
    b = "projection"
    print(
        f"\nProjection: one paper trial of Fig. 4 (learning loss, ResNet-18 full width): "
        f"{p.epochs} epochs x (labeled sets of {p.cycles} cycles) = {p.training_images:,} training images, "
        f"{p.cycles} x {p.test_size:,} test images, {p.cycles - 1} x M={p.subset_size:,} scored, "
        f"from the measured throughputs on {args.device.type}",
        flush=True,
    )
    for name, (tr, sc, ev) in sides.items():
        res.add(
            b,
            f"one Fig. 4 trial, {name}",
            p.hours(tr, sc, ev),
            "h",
            note=f"train {p.training_images / tr / 3600:.1f} h",
        )
    ref = f.get("epoch_ips/w64/ref")
    if ref:
        res.add(b, "one Fig. 4 trial, reference pipeline (training only)", p.training_images / ref / 3600, "h")
    first = next(iter(sides.values()))
    res.add(
        b,
        f"whole Fig. 4 sweep ({FIG4_SAMPLERS} samplers x {FIG4_TRIALS} trials), one device",
        p.hours(*first) * FIG4_SAMPLERS * FIG4_TRIALS / 24,
        "days",
    )
