"""Quality benchmark: the ablation ladder trained to its best validation AUC over seeds, on two worlds, beside the
no-model floor and the oracle, with what MARN's mechanism is meant to do measured directly.

    python benchmarks/quality.py                           # both worlds, 5 rungs x 5 seeds
    python benchmarks/quality.py --world default --seeds 3 --variants man marn --json /tmp/q.json
    python benchmarks/quality.py --data DIR --config CFG --world realistic   # any `marn preprocess` output
    python benchmarks/quality.py --set model.lambda_align=0 --runs /tmp/q-noalign   # an ablation of a default
    python benchmarks/quality.py --variants marn --set model.adversarial_margin=0.1 --against /tmp/q.json
        # an override judged against the defaults' --json: each variant's AUC change, paired by seed

The worlds: `default` is the embedded data (`marn generate-data`, the planted world whose category kinds say
which modality matters); `realistic` is `marn generate-data --world realistic --users 1500` (heavy tails,
cold users and items, drift, weak content: the IDs carry most of the signal). Defaults are chosen on
validation AUC over both, never on test and never on one world alone.

Every run trains with a validation pass every `--steps-per-eval` steps, keeps its best-validation
checkpoint and stops after `--patience` passes without a better validation AUC (at most `--max-evals`);
the test figures are of that checkpoint. Printed per world (and with `--json PATH` written as a record,
`benchmarks/record.py`, whose `targets` hold every target of `quality_targets.py` as {"name", "measured",
"target", "met"}; a record under `benchmarks/results/` feeds the quality tables `benchmarks/render.py` writes):

* per variant: validation and test AUC/GAUC, mean ± sample std over seeds; steps to the best point;
* paired per-seed differences of the ladder's rungs (marn - man, man - concat, ...) with a 95% t interval;
* the no-model floor (point-in-time smoothed item + user click rates, a logit sum) and the oracle (the
  generator's true click probability), on the same test split;
* D1 accuracy at every validation pass (against chance: always naming the most common present modality) and
  Ds accuracy; invariant-collapse statistics: the spread of c^m across items (dead dimensions) and the same
  item's cross-modal cosine against random pairs;
* mean modality weights and the AUC cost of hiding each modality, per category kind of the planted world.

Finished runs are reused (a run directory is named by a digest of its resolved model/train config, not of the
code); delete `--runs` to redo them. `--reuse RECORD` takes the results of an earlier `--json` record's runs
whose digest matches (a record holds no checkpoint), so one benchmark can be assembled over several machines or
days; runs scored on different test splits (their no-model floors differ) stop the report. Each run records
the code version it was trained at (`git describe`), and the report says how many runs were reused, the code
versions of all runs, and how long training and evaluating every run took in all: the time of the same command
with an empty `--runs` (a run trained beside others with `--jobs` counts its time over the number of jobs).
`--jobs N` trains N runs at a time, each in a process of its own: a machine with more cores than one run keeps busy finishes sooner (docs/experiments.md measures 2 cores).
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import hashlib
import json
import math
import os
import sys
import time

import numpy as np

import marn_tf  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from embedded_data import ensure_embedded_data, ensure_realistic_data  # benchmarks/, beside this script
from marn_tf.workflow.summary import spread
from quality_targets import targets_of
from record import code_version, command_line, write_record

BENCH = "/tmp/marn-bench"
WORLDS = ("default", "realistic")
LADDER = ["din", "concat", "man", "maan", "marn"]
PAIRS = [("concat", "din"), ("man", "concat"), ("maan", "man"), ("marn", "maan"), ("marn", "man")]
AUC_KEYS = ("validation_auc", "test_auc")
# 0.975 quantiles of Student's t for 1..30 degrees of freedom (no scipy in the stack)
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def paired_difference(a: list[float], b: list[float]) -> dict:
    """Mean of a - b over paired seeds with its 95% t interval (None with fewer than 2 pairs)."""
    d = np.asarray(a, float) - np.asarray(b, float)
    if len(d) < 2:
        return {"mean": float(d.mean()) if len(d) else None, "low": None, "high": None, "n": len(d)}
    half = T975[min(len(d) - 2, len(T975) - 1)] * d.std(ddof=1) / math.sqrt(len(d))
    return {"mean": float(d.mean()), "low": float(d.mean() - half), "high": float(d.mean() + half), "n": len(d)}


def paired_by_seed(runs: list[dict], others: list[dict], key: str) -> dict:
    """`paired_difference` of `key` between `runs` and the runs of `others` with the same seeds."""
    by_seed = {r["seed"]: r[key] for r in others}
    matched = [(r[key], by_seed[r["seed"]]) for r in runs if r["seed"] in by_seed]
    return paired_difference([a for a, _ in matched], [b for _, b in matched])


def interval_text(d: dict) -> str:
    if d["mean"] is None:
        return "–"
    return f"{d['mean']:+.4f}" + (f" [{d['low']:+.4f}, {d['high']:+.4f}]" if d["low"] is not None else "")


# -- data --------------------------------------------------------------------------------------------------
def world_data(args) -> dict[str, tuple[str, str]]:
    """world -> (preprocessed data, config): --data/--config as the one world --world names, else each world's
    dataset, generated and preprocessed once under /tmp/marn-bench."""
    if args.data:
        return {args.world: (args.data, args.config)}
    worlds = WORLDS if args.world == "both" else (args.world,)
    found = {}
    for world in worlds:
        data, raw = (f"{BENCH}/quality-data", f"{BENCH}/quality-raw") if world == "default" else (
            f"{BENCH}/quality-{world}-data", f"{BENCH}/quality-{world}-raw")
        ensure = ensure_embedded_data if world == "default" else ensure_realistic_data
        found[world] = (data, ensure(data, raw, args.config))
    return found


def world_of(config_path: str) -> dict:
    """The generator's `world.json` beside the config (category kinds, oracle), or {} for other data."""
    path = os.path.join(os.path.dirname(os.path.abspath(config_path)), "world.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


# -- one run -----------------------------------------------------------------------------------------------
def run_config(args, variant: str, seed: int):
    from marn_tf.config import Config

    config = Config.load(args.config, [
        f"train.seed={seed}", f"train.batch_size={args.batch_size}", f"train.steps_per_epoch={args.steps_per_eval}",
        f"train.epochs={args.max_evals}", f"train.early_stopping_patience={args.patience}", *args.set])
    # the variant's structure; a --set key this variant does not read is reset, so `--set model.lambda_align=0`
    # reuses man's runs (and `--set model.sequence_encoder=augru` din's)
    return dataclasses.replace(config, model=config.model.for_variant(variant))


def run_dir(args, config) -> str:
    data = config.to_dict()
    # runtime: keys were in train: before 2026-11-30; hashed there still, and the model as written before its
    # structure keys (fusion, discriminators, sequence_encoder: none): runs made since then stay reusable
    # runtime.min_shard_bytes (2026-11-30) only places a parameter-server run's variables: not in the digest
    runtime = {k: v for k, v in data["runtime"].items() if k != "min_shard_bytes"}
    resolved = json.dumps({"model": config.model.digest_dict(), "train": {**config.train.digest_dict(), **runtime}},
                          sort_keys=True)
    digest = hashlib.sha256(resolved.encode()).hexdigest()[:10]
    return os.path.join(args.runs, f"{config.model.variant}-seed{config.train.seed}-{digest}")


def invariance_statistics(network, max_items: int = 2000) -> dict:
    """Collapse and agreement of the invariant vectors c^m over catalog items (those with content)."""
    import tensorflow as tf

    tower = network.item_tower
    items = tf.range(1, min(tower.num_items, max_items + 1))
    vectors = tower.encoder.modality_vectors(tower.content(items), training=False)
    if vectors["invariant"] is None:
        return {}
    c, mask = vectors["invariant"].numpy(), vectors["mask"].numpy() > 0
    modalities = tower.modalities
    per_modality = {}
    for m, name in enumerate(modalities):
        present = c[mask[:, m], m]
        spread = present.std(axis=0)
        per_modality[name] = {"items": int(len(present)), "mean_std": float(spread.mean()),
                              "dead_dimensions": float(np.mean(spread < 1e-3))}
    unit = c / np.maximum(np.linalg.norm(c, axis=-1, keepdims=True), 1e-9)
    rng = np.random.default_rng(0)
    same, other, pair_gaps = [], [], {}
    for m in range(len(modalities)):
        for n in range(m + 1, len(modalities)):
            both = np.flatnonzero(mask[:, m] & mask[:, n])
            if len(both) < 2:
                continue
            shuffled = rng.permutation(both)
            same.append(float(np.mean(np.sum(unit[both, m] * unit[both, n], -1))))
            other.append(float(np.mean(np.sum(unit[both, m] * unit[shuffled, n], -1))))
            pair_gaps[f"{modalities[m]}-{modalities[n]}"] = same[-1] - other[-1]
    gap = float(np.mean(same) - np.mean(other)) if same else None
    return {"per_modality": per_modality, "same_item_cosine": float(np.mean(same)) if same else None,
            "random_pair_cosine": float(np.mean(other)) if other else None, "cosine_gap": gap,
            "cosine_gap_by_pair": pair_gaps}


def weights_by_kind(evaluation: dict, world: dict) -> dict:
    """Example-weighted mean modality weight per category kind of the generator."""
    kinds = world.get("category_kind", {})
    sums: dict = {}
    for category, row in evaluation["modality_weights_by_category"].items():
        kind = kinds.get(category)
        if kind is None:
            continue
        for modality, weight in row["modality_weights"].items():
            if weight is not None:
                total = sums.setdefault(kind, {}).setdefault(modality, [0.0, 0])
                total[0] += weight * row["examples"]
                total[1] += row["examples"]
    return {kind: {m: s / n for m, (s, n) in row.items() if n} for kind, row in sums.items()}


def one_run(args, variant: str, seed: int, world: dict) -> dict:
    import tensorflow as tf

    from marn_tf.evaluation.evaluate import evaluate
    from marn_tf.evaluation.modality_use import importance_by_kind
    from marn_tf.training.callbacks import read_history
    from marn_tf.training.training_directory import TrainingDirectory
    from marn_tf.training.trainer import train
    from marn_tf.training.training_run import restore_run

    config = run_config(args, variant, seed)
    out = run_dir(args, config)
    done = os.path.join(out, "quality.json")
    if os.path.exists(done):
        print(f"{variant} seed {seed}: reusing {out}", flush=True)
        with open(done) as f:
            result = json.load(f)
        if result.get("d1_accuracy") is not None and "chance_of" not in result:  # saved with chance 1/M
            measured = evaluate(out, args.data, "test", output_dir=os.path.join(out, "evaluation_chance"),
                                modality_importance=False)
            result.update(chance=measured["chance_accuracy"], chance_of="the most common present modality")
            with open(done, "w") as f:
                json.dump(result, f, indent=2)
        return {**result, "reused": True}
    print(f"training {variant} seed {seed} -> {out}", flush=True)
    start = time.time()
    summary = train(config, args.data, out, progress=False)
    restored = restore_run(out, args.data)  # one network scores both splits
    validation = evaluate(out, args.data, "validation", output_dir=os.path.join(out, "evaluation_validation"),
                          modality_importance=False, restored=restored)
    world_file = os.path.join(os.path.dirname(os.path.abspath(args.config)), "world.json")
    kinds = bool(world.get("category_kind"))  # the hiding passes are summed by kind; a world without kinds skips them
    test = evaluate(out, args.data, "test", world_file=world_file if kinds else None, modality_importance=kinds,
                    restored=restored)
    network = restored[2]
    history = read_history(TrainingDirectory(out).history)
    result = {
        "variant": variant, "seed": seed, "run": out, "code": code_version(), "seconds": round(time.time() - start, 1),
        "jobs": args.jobs,
        "best_step": max(history, key=lambda h: h.get("val_auc", -1))["step"] if history else None,
        "steps": summary.steps, "validation_auc": validation["auc"], "validation_gauc": validation["gauc"],
        "test_auc": test["auc"], "test_gauc": test["gauc"], "test_logloss": test["logloss"],
        "floor": test.get("floor"), "chance": test["chance_accuracy"],
        "chance_of": "the most common present modality",
        "d1_accuracy": test["d1_accuracy"], "ds_accuracy": test["ds_accuracy"],
        "d1_by_evaluation": [h.get("val_d1_accuracy") for h in history],
        "ds_by_evaluation": [h.get("val_ds_accuracy") for h in history],
        "weights_by_kind": weights_by_kind(test, world),
        "importance_by_kind": importance_by_kind(test, world) if kinds else {},
        "invariance": invariance_statistics(network),
    }
    with open(done, "w") as f:
        json.dump(result, f, indent=2)
    tf.keras.backend.clear_session()
    return result


def reuse_from_record(args, baseline: dict, path: str, world_name: str) -> int:
    """Finished runs of an earlier `--json` record (its results only; the record holds no checkpoint) placed as
    finished runs in `args.runs`, for every variant and seed whose run directory, a digest of the resolved
    config, is the one this command would train: a benchmark split over several machines or days. Returns how
    many were placed; a run already in `args.runs` is kept."""
    earlier = baseline.get("worlds", {}).get(world_name, {}).get("runs") or {}
    placed = 0
    for variant in args.variants:
        by_name = {os.path.basename(r.get("run", "")): r for r in earlier.get(variant, [])}
        for seed in range(1, args.seeds + 1):
            out = run_dir(args, run_config(args, variant, seed))
            result = by_name.get(os.path.basename(out))
            done = os.path.join(out, "quality.json")
            if result is None or os.path.exists(done):
                continue
            os.makedirs(out, exist_ok=True)
            kept = {k: v for k, v in result.items() if k != "reused"}
            with open(done, "w") as f:
                json.dump({**kept, "from_record": path}, f, indent=2)
            placed += 1
    return placed


def one_test_split(runs: list[dict]) -> None:
    """Exits when the runs' no-model floors differ: they were scored on different test splits (a world
    generated again differently, or runs reused from other data), and their figures cannot be compared."""
    floors = {round(r["floor"]["auc"], 9) for r in runs if r.get("floor")}
    if len(floors) > 1:
        sys.exit(f"the runs were scored on different test splits (no-model floors {sorted(floors)}): reuse runs "
                 "only from the same data, or give --runs an empty folder")


def all_runs(args, world: dict) -> dict[str, list[dict]]:
    """{variant: its runs, by seed}; with `--jobs` N > 1, N runs at a time, each in a fresh process."""
    keys = [(variant, seed) for variant in args.variants for seed in range(1, args.seeds + 1)]
    if args.jobs == 1:
        done = {key: one_run(args, *key, world) for key in keys}
    else:
        import concurrent.futures
        import multiprocessing

        # spawn, not fork: TensorFlow's threads do not survive a fork
        with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"),
                                                    max_tasks_per_child=1) as pool:
            futures = {key: pool.submit(one_run, args, *key, world) for key in keys}
            done = {key: future.result() for key, future in futures.items()}
    return {variant: [done[(variant, seed)] for seed in range(1, args.seeds + 1)] for variant in args.variants}


# -- the table ---------------------------------------------------------------------------------------------
def mean_std(values) -> str:
    measured = spread(values)  # the sample std (ddof 1); tables before 2026-12-01 gave numpy's default, ddof 0
    return f"{measured[0]:.4f} ± {measured[1]:.4f}" if measured else "–"


def report(args, results: dict, world: dict, seconds: float, baseline: dict | None = None,
           world_name: str = "default") -> dict:
    command = command_line()
    one_test_split([r for runs in results.values() for r in runs])
    floors = [r["floor"]["auc"] for runs in results.values() for r in runs if r.get("floor")]
    floor_auc = float(np.mean(floors)) if floors else None
    oracle = world.get("oracle", {}).get("test")
    runs = [r for rs in results.values() for r in rs]
    reused = sum(bool(r.get("reused")) for r in runs)
    # a run trained beside others (--jobs) took longer than alone: its share of the machine's time
    run_minutes = sum(r["seconds"] / r.get("jobs", 1) for r in runs) / 60
    codes = dict(collections.Counter(r.get("code") or "not recorded" for r in runs))  # saved without it: not recorded
    print(f"\n{command}\n{args.seeds} seeds; a validation pass every {args.steps_per_eval} steps of "
          f"{args.batch_size}, patience {args.patience}, at most {args.max_evals}; best-validation checkpoints; "
          f"{seconds / 60:.1f} min, {reused} of {len(runs)} runs reused from {args.runs}; training and evaluating "
          f"every run took {run_minutes:.1f} min in all; the runs' code: "
          + ", ".join(f"{code} ({n})" for code, n in sorted(codes.items())) + "\n")
    print("| variant | validation AUC | test AUC | test GAUC | best step | D1 acc. (test) | Ds acc. (test) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    if floor_auc is not None:
        print(f"| no-model floor | – | {floor_auc:.4f} | – | – | – | – |")
    for variant, runs in results.items():
        print(f"| {variant} | {mean_std([r['validation_auc'] for r in runs])} | {mean_std([r['test_auc'] for r in runs])}"
              f" | {mean_std([r['test_gauc'] for r in runs])} | {np.mean([r['best_step'] or 0 for r in runs]):.0f} | "
              f"{mean_std([r['d1_accuracy'] for r in runs])} | {mean_std([r['ds_accuracy'] for r in runs])} |")
    if oracle is not None:
        print(f"| oracle (true click probability) | – | {oracle:.4f} | – | – | – | – |")

    pairs = {}
    print("\n| paired difference over seeds | validation AUC (95% interval) | test AUC (95% interval) |\n|---|---:|---:|")
    for better, worse in PAIRS:
        if better in results and worse in results:
            validation, test = (paired_by_seed(results[better], results[worse], key) for key in AUC_KEYS)
            pairs[f"{better} - {worse}"] = {**test, "validation": validation}  # test at the top level, as targets read
            print(f"| {better} - {worse} | {interval_text(validation)} | {interval_text(test)} |")

    adversarial = [v for v in ("maan", "marn") if v in results]
    if adversarial:
        print("\n| variant, seed | D1 accuracy at each validation pass (chance "
              f"{results[adversarial[0]][0]['chance']:.2f}) | Ds (last) | same-item cosine | random cosine | "
              "dead dims of c^m | cosine gap per modality pair |\n|---|---|---:|---:|---:|---|---|")
        for variant in adversarial:
            for r in results[variant]:
                inv = r["invariance"]
                dead = ", ".join(f"{m} {s['dead_dimensions']:.2f}" for m, s in inv.get("per_modality", {}).items())
                d1 = " ".join(f"{v:.2f}" for v in r["d1_by_evaluation"] if v is not None)
                ds = next((v for v in reversed(r["ds_by_evaluation"]) if v is not None), None)
                # runs cached before 2026-11-30 lack the breakdown: "–"
                by_pair = ", ".join(f"{p} {g:+.3f}" for p, g in inv.get("cosine_gap_by_pair", {}).items()) or "–"
                print(f"| {variant} {r['seed']} | {d1} | {ds if ds is None else round(ds, 3)} | "
                      f"{inv.get('same_item_cosine') or 0:.3f} | {inv.get('random_pair_cosine') or 0:.3f} | {dead} | "
                      f"{by_pair} |")
    if world.get("category_kind"):
        print("\n| variant | mean modality weight per category kind (visual / popularity / mixed) |\n|---|---|")
        for variant in ("man", "maan", "marn"):
            if variant in results:
                kinds = results[variant][0]["weights_by_kind"]
                modalities = sorted({m for row in kinds.values() for m in row})
                cells = "; ".join(f"{m} " + " / ".join(f"{kinds.get(k, {}).get(m, float('nan')):.3f}"
                                                      for k in ("visual", "popularity", "mixed")) for m in modalities)
                print(f"| {variant} (seed {results[variant][0]['seed']}) | {cells} |")
        print("\n| variant | AUC cost of hiding each modality, mean over seeds (visual / popularity / mixed) |\n|---|---|")
        for variant in ("din", "man", "marn"):
            costs = [r.get("importance_by_kind", {}) for r in results.get(variant, [])]
            modalities = sorted({m for kinds in costs for row in kinds.values() for m in row})
            cells = "; ".join(f"{m} " + " / ".join(f"{np.mean([c[k][m] for c in costs if m in c.get(k, {})] or [np.nan]):.4f}"
                                                  for k in ("visual", "popularity", "mixed")) for m in modalities)
            if cells:
                print(f"| {variant} | {cells} |")

    figures = {"command": command, "minutes": round(seconds / 60, 1), "run_minutes": round(run_minutes, 1),
               "reused_runs": reused, "run_code": codes, "floor_auc": floor_auc, "oracle_auc": oracle,
               "runs": results, "pairs": pairs}
    if baseline is not None:
        figures["against"] = against_baseline(results, baseline, args.against, world_name)
    return figures


def load_baseline(path: str, option: str = "--against") -> dict:
    """An earlier `--json` output (a record's figures, with its command), checked before any training: exits with
    what is wrong."""
    try:
        with open(path) as f:
            baseline = json.load(f)
    except (OSError, ValueError) as err:
        sys.exit(f"{option} {path}: cannot be read as a quality.py --json output ({err})")
    if isinstance(baseline, dict) and isinstance(baseline.get("figures"), dict):  # a record (benchmarks/record.py)
        baseline = {"command": baseline.get("command"), **baseline["figures"]}
    if not isinstance(baseline, dict) or not isinstance(baseline.get("runs", baseline.get("worlds")), dict):
        sys.exit(f"{option} {path}: not a quality.py --json output (no \"runs\")")
    return baseline


def against_baseline(results: dict, baseline: dict, path: str, world: str = "default") -> dict:
    """Each variant's validation and test AUC minus those of the same variant and seed in `baseline`, an earlier
    `--json` (e.g. the defaults' run beside an override's), in the same world: how every trial is judged."""
    earlier = baseline.get("worlds", {}).get(world, {}).get("runs") or baseline.get("runs", {})
    differences = {variant: {key: paired_by_seed(runs, earlier[variant], key) for key in AUC_KEYS}
                   for variant, runs in results.items() if variant in earlier}
    print(f"\nagainst {path} ({baseline.get('command', 'no command recorded')}), paired by seed:\n"
          "| variant | seeds | validation AUC, this - that (95% interval) | test AUC, this - that (95% interval) |\n"
          "|---|---:|---:|---:|")
    for variant, d in differences.items():
        print(f"| {variant} | {d['test_auc']['n']} | {interval_text(d['validation_auc'])} | "
              f"{interval_text(d['test_auc'])} |")
    missing = sorted(set(results) - set(differences))
    if missing:
        print(f"({', '.join(missing)}: not in {path})")
    return {"path": path, "command": baseline.get("command"), "differences": differences}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", choices=WORLDS + ("both",), default="both",
                        help="the generated world(s) to run on, or the name --data's targets go by (default both)")
    parser.add_argument("--data", help="a `marn preprocess` output instead of a generated world (with --config)")
    parser.add_argument("--config", help="its YAML config")
    parser.add_argument("--variants", nargs="+", default=LADDER, choices=LADDER)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--steps-per-eval", type=int, default=40, help="steps between validation passes")
    parser.add_argument("--max-evals", type=int, default=8, help="at most this many validation passes")
    parser.add_argument("--patience", type=int, default=2, help="passes without a better validation AUC before stopping")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs trained at a time, each in a process of its own beyond 1 (default 1)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for every run, e.g. model.lambda_align=0 (repeatable)")
    parser.add_argument("--runs", default=f"{BENCH}/quality-runs", help="finished runs, one folder per world")
    parser.add_argument("--reuse", metavar="JSON", action="append", default=[],
                        help="an earlier --json record: its runs whose config digest matches are reused as finished "
                             "runs (repeatable), so a benchmark can be assembled over several machines or days")
    parser.add_argument("--json", help="also write a record of every figure and the targets to this JSON file "
                                       "(benchmarks/record.py; benchmarks/results/quality-*.json are rendered)")
    parser.add_argument("--against", metavar="JSON",
                        help="an earlier --json (e.g. the defaults): also print each variant's AUC minus that run's, "
                             "paired by seed with a 95%% interval")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error(f"--jobs is {args.jobs}: it must be 1 or more (runs trained at a time)")
    if bool(args.data) != bool(args.config) or (args.data and args.world == "both"):
        parser.error("--data and --config go together, with --world naming the world whose targets they meet")
    baseline = load_baseline(args.against) if args.against else None  # a wrong path fails now, not after training
    reused_records = {path: load_baseline(path, "--reuse") for path in args.reuse}
    start = time.time()
    worlds = {}
    for name, (data, config) in world_data(args).items():
        world_args = argparse.Namespace(**{**vars(args), "data": data, "config": config,
                                           "runs": os.path.join(args.runs, name)})
        world = world_of(config)
        began = time.time()
        print(f"\n== {name} world: {data}", flush=True)
        for path, record in reused_records.items():
            placed = reuse_from_record(world_args, record, path, name)
            print(f"{placed} finished run(s) of {path} placed in {world_args.runs}", flush=True)
        results = all_runs(world_args, world)
        worlds[name] = report(world_args, results, world, time.time() - began, baseline, name)
    targets = targets_of({name: {"results": w["runs"], "floor_auc": w["floor_auc"]} for name, w in worlds.items()})
    run_minutes = round(sum(w["run_minutes"] for w in worlds.values()), 1)
    print(f"\n{len(worlds)} world(s), {(time.time() - start) / 60:.1f} min; every run trained here afresh: about "
          f"{run_minutes} min\n| target | measured | goal | met |\n|---|---|---|---|")
    for t in targets:
        print(f"| {t['name']} | {t['measured']} | {t['target']} | {'yes' if t['met'] else 'NO'} |")
    if args.json:
        write_record(args.json, "quality", {"minutes": round((time.time() - start) / 60, 1),
                                            "run_minutes": run_minutes, "worlds": worlds, "targets": targets})


if __name__ == "__main__":
    main()
