"""Experiment trackers behind the logger interface: TensorBoard (step loss, HParams), MLflow and
W&B (offline). Each is read back from what it wrote (event files, MlflowClient on a local
SQLite store, W&B's offline run file) and checked value for value against metrics.csv and
summary.json; a resume continues the same tracker runs; a tracker that cannot start stops the
run before training, one that fails later is dropped with one warning."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

import pytest
import yaml
from rich.console import Console

from dltrain import runs
from dltrain.errors import UserError
from dltrain.loggers import flatten
from dltrain.loggers.base import final_metrics, recorded, run_context, run_name
from dltrain.loggers.csv_file import CsvLogger
from dltrain.schema import to_dict
from dltrain.train import run as run_module
from dltrain.train.callbacks import LoggerFanOut
from dltrain.train.run import run_training

REPO = Path(__file__).resolve().parents[2]
# MLflow's SQL store, read back here, uses a loader option SQLAlchemy 2 deprecates
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy")


def quiet():
    return Console(file=io.StringIO())


def train(config, run_dir, **kwargs):
    return run_training(config, run_dir, quiet(), **kwargs)


# ---------------------------------------------------------------------------------------------
# readers of what each tracker wrote
def tensorboard_events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0, "images": 0})
    events.Reload()
    return events


def tensorboard_hparams(events):
    from tensorboard.plugins.hparams import metadata

    content = events.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_START_INFO_TAG]
    start = metadata.parse_session_start_info_plugin_data(content)
    return {key: value.string_value if value.HasField("string_value") else value.number_value
            for key, value in start.hparams.items()}


def wandb_records(path):
    """The records of a W&B run file (run-ID.wandb): LevelDB's log format (32 KiB blocks of
    chunks, each with a 7-byte header: CRC, length, type) behind a 7-byte ':W&B' file header;
    each record a protobuf ``Record``. wandb 0.2x+ ships no Python reader of its own."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    block, pos, pending = 32768, 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0:
            break
        pending = chunk if kind in (1, 2) else pending + chunk  # full, first; middle, last
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def wandb_items(items):
    """``{key: value}`` of W&B's items (a history row, a summary or config update): the key is
    ``key``, or ``nested_key`` joined by /; the value JSON."""
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items}


def wandb_sessions(run_dir):
    """Each offline session of the run (oldest first): its run id, name, group, config,
    history rows (by _step), summary and files."""
    sessions = []
    for path in sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb")):
        session = {"config": {}, "history": {}, "summary": {}, "files": set()}
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                session.update(id=record.run.run_id, name=record.run.display_name,
                               group=record.run.run_group)
                session["config"].update(wandb_items(record.run.config.update))
            elif kind == "config":
                session["config"].update(wandb_items(record.config.update))
            elif kind == "history":
                row = wandb_items(record.history.item)
                session["history"][row.pop("_step")] = {k: v for k, v in row.items()
                                                        if not k.startswith("_")}
            elif kind == "summary":
                session["summary"].update(wandb_items(record.summary.update))
            elif kind == "files":
                session["files"] |= {f.path for f in record.files.files}
        sessions.append(session)
    return sessions


def mlflow_client(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory):
    """One SQLite store for the module: creating its tables takes MLflow seconds. The loggers
    create the experiment (its artifacts beside the store)."""
    pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    mlflow_client(uri).search_experiments()
    return uri


@pytest.fixture
def offline_wandb(monkeypatch, tmp_path):
    """W&B offline, with its own settings and caches in a temporary folder (never ~/)."""
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    for key in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(key, str(tmp_path / "wandb-home" / key.lower()))


def csv_columns(run_dir):
    rows = runs.read_metrics(Path(run_dir) / runs.METRICS)
    return rows, {key: [row[key] for row in rows] for key in rows[0] if key != "epoch"}


# ---------------------------------------------------------------------------------------------
# not imported unless chosen
@pytest.mark.slow
def test_the_trackers_are_imported_only_when_chosen():
    """`dltrain --help` and a default run (metrics.csv only) never import mlflow or wandb."""
    code = (
        "import io, sys\n"
        "sys.path.insert(0, 'tests/unit')\n"
        "from dltrain import cli\n"
        "try:\n"
        "    cli.main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = {'mlflow', 'wandb'}\n"
        "assert not heavy & set(sys.modules), sorted(heavy & set(sys.modules))\n"
        "import tempfile\n"
        "from rich.console import Console\n"
        "from unit_support import make_config\n"
        "from dltrain.train.run import run_training\n"
        "run_training(make_config(trainer={'batch_size': 256}), tempfile.mkdtemp(),\n"
        "             Console(file=io.StringIO()))\n"
        "assert not heavy & set(sys.modules), sorted(heavy & set(sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]


def test_several_trackers_compose_by_name():
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from dltrain import schema
    from dltrain.schema import load_config

    schema.register_configs()
    OmegaConf.register_new_resolver("dltrain_uid", lambda: "x", replace=True)
    with initialize_config_dir(str(REPO / "configs"), version_base="1.3"):
        config = load_config(compose("train", overrides=[
            "logger=[csv,tensorboard,mlflow,wandb]", "logger.mlflow.log_model=true",
            "+logger.mlflow.tags.team=vision", "logger.wandb.tags=[a,b]"]))
    assert list(config.logger) == ["csv", "tensorboard", "mlflow", "wandb"]
    assert config.logger["mlflow"].log_model and config.logger["mlflow"].tags == {"team": "vision"}
    assert config.logger["wandb"].tags == ["a", "b"] and config.logger["wandb"].mode is None


# ---------------------------------------------------------------------------------------------
# the fan-out: log points, failures
class Recorder:
    """A logger with every optional method, recording its calls; ``fail`` names a method that
    raises."""

    def __init__(self, fail=None):
        self.calls, self.fail = [], fail

    def __getattr__(self, method):
        if method not in ("start", "log_params", "log_metrics", "log_artifact", "finish",
                          "log_step", "log_summary", "record"):
            raise AttributeError(method)

        def call(*args, **kwargs):
            self.calls.append((method, *args, *kwargs.values()))
            if method == self.fail:
                raise ConnectionError("the server went away")
            return {"run_id": "abc"} if method == "record" else None

        return call


def fake_job(accumulate=1, log_every=2, step=0):
    trainer = SimpleNamespace(accumulate=accumulate, log_every=log_every)
    return SimpleNamespace(config=SimpleNamespace(trainer=trainer), state=SimpleNamespace(step=step))


def test_step_metrics_are_read_at_the_loops_log_points_only(tmp_path):
    recorder = Recorder()
    fan = LoggerFanOut([CsvLogger(tmp_path), recorder])
    reads = []
    fan.on_epoch_start(None, 7)
    for batch in range(1, 8):  # accumulate=2: optimizer steps at batches 2, 4, 6, 7
        job = fake_job(accumulate=2, log_every=2, step=batch // 2 + (batch == 7))
        fan.on_step(job, batch, lambda: reads.append(1) or {"train_loss": 0.5})
    # the epoch's optimizer steps 0 and 2 (batches 2 and 6): the loop's gradient-norm points
    assert [call for call in recorder.calls if call[0] == "log_step"] == [
        ("log_step", {"train_loss": 0.5}, 1), ("log_step", {"train_loss": 0.5}, 3)]
    assert len(reads) == 2

    csv_only = LoggerFanOut([CsvLogger(tmp_path)])  # no logger takes steps: no host sync
    csv_only.on_epoch_start(None, 3)
    csv_only.on_step(fake_job(log_every=1, step=1), 1, lambda: pytest.fail("read the device"))


def test_a_logger_that_fails_mid_run_is_dropped_with_one_warning(make_config, tmp_path, monkeypatch, capsys):
    failing, fine = Recorder(fail="log_metrics"), Recorder()
    real = run_module.build_loggers
    monkeypatch.setattr(run_module, "build_loggers",
                        lambda options, run_dir: [*real(options, run_dir), failing, fine])
    summary = train(make_config(trainer={"epochs": 3, "batch_size": 256}), tmp_path)

    assert summary["status"] == "completed"
    assert [r["epoch"] for r in runs.read_metrics(tmp_path / runs.METRICS)] == [1.0, 2.0, 3.0]
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == ["warning: logger=Recorder failed (log_metrics: ConnectionError: the server "
                        "went away); training goes on without it"]
    # never called again after its failure; the other logger got everything
    assert [call[0] for call in failing.calls][-1] == "log_metrics"
    assert [call[0] for call in fine.calls].count("log_metrics") == 3
    assert fine.calls[-1] == ("finish", "completed")
    assert "loggers" in runs.read_record(tmp_path)  # what the loggers recorded is in run.yaml


def test_a_logger_that_cannot_start_stops_the_run_and_closes_the_others(make_config, tmp_path, monkeypatch):
    started, failing = Recorder(), Recorder(fail="start")
    real = run_module.build_loggers
    monkeypatch.setattr(run_module, "build_loggers",
                        lambda options, run_dir: [*real(options, run_dir), started, failing])
    with pytest.raises(UserError, match=r"^logger=Recorder could not start: ConnectionError: the "
                                        r"server went away; fix its options or leave it out$"):
        train(make_config(), tmp_path)
    assert started.calls[-1] == ("finish", "failed")
    assert not (tmp_path / runs.CHECKPOINTS).exists() and not (tmp_path / runs.RECORD).exists()


# ---------------------------------------------------------------------------------------------
# shared pieces
def test_sweep_jobs_are_named_and_tagged_with_their_sweep(tmp_path):
    job = tmp_path / "sweep" / "3"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(
        {"hydra": {"mode": "MULTIRUN", "job": {"num": 3}}}))
    context = run_context(job)
    assert context["run_dir"] == str(job) and (context["sweep"], context["job"]) == (str(job.parent), "3")
    assert run_name(job) == "sweep/3"
    single = tmp_path / "12-00-00-abcdef"
    single.mkdir()
    assert "sweep" not in run_context(single) and run_name(single) == single.name


def test_the_latest_record_of_a_logger_is_read_back(tmp_path):
    (tmp_path / runs.RECORD).write_text(yaml.safe_dump({
        "loggers": {"mlflow": {"run_id": "first"}},
        "resumes": [{"from_epoch": 2}, {"from_epoch": 3, "loggers": {"mlflow": {"run_id": "new"}}}]}))
    assert recorded(tmp_path, "mlflow") == {"run_id": "new"} and recorded(tmp_path, "wandb") == {}


def test_final_metrics_are_the_test_metrics_and_the_best_epoch():
    summary = {"status": "completed", "test_loss": 0.5, "test_acc": 0.9, "best_val_loss": 0.4,
               "best_epoch": 2, "epochs_completed": 3, "monitor": "val_loss"}
    assert final_metrics(summary) == {"test_loss": 0.5, "test_acc": 0.9, "best_val_loss": 0.4,
                                      "best_epoch": 2.0}
    assert final_metrics({"status": "failed", "best_val_loss": None}) == {}


def test_mlflow_params_and_store_paths():
    pytest.importorskip("mlflow")
    from dltrain.loggers.mlflow_logger import param_value, resolve_uri

    assert [param_value(v, 100) for v in ("sgd", 0.1, None, True, [64, 32])] == \
        ["sgd", "0.1", "null", "true", "[64, 32]"]
    assert param_value("x" * 500, 100) == "x" * 97 + "..."
    assert resolve_uri(None) == f"sqlite:///{Path.cwd() / 'outputs' / 'mlflow.db'}"
    assert resolve_uri("sqlite:///runs.db") == f"sqlite:///{Path.cwd() / 'runs.db'}"
    assert resolve_uri("http://tracking:5000") == "http://tracking:5000"


def test_wandb_is_offline_unless_told(monkeypatch, tmp_path, offline_wandb):
    from dltrain.loggers.wandb_logger import WandbLogger

    assert WandbLogger(tmp_path).mode == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert WandbLogger(tmp_path).mode == "disabled"
    assert WandbLogger(tmp_path, mode="offline").mode == "offline"


# ---------------------------------------------------------------------------------------------
# each tracker read back
def test_tensorboard_writes_step_loss_hparams_and_test_metrics(make_config, tmp_path):
    pytest.importorskip("tensorboard")
    from dltrain.loggers.tensorboard import TensorBoardLogger, hparam_values

    config = make_config(trainer={"epochs": 2, "batch_size": 256, "log_every": 2},
                         logger={"tensorboard": {"name": "tensorboard"}})
    summary = train(config, tmp_path)
    rows, columns = csv_columns(tmp_path)
    events = tensorboard_events(tmp_path / TensorBoardLogger.FOLDER)

    for key, tag in (("train_loss", "loss/train"), ("val_acc", "acc/val"), ("lr", "lr")):
        assert [s.step for s in events.Scalars(tag)] == [1, 2]
        assert [s.value for s in events.Scalars(tag)] == pytest.approx(columns[key], rel=1e-6)
    for key, tag in (("test_loss", "loss/test"), ("test_acc", "acc/test"),
                     ("best_val_loss", "best_val_loss"), ("best_epoch", "best_epoch")):
        assert [(s.step, s.value) for s in events.Scalars(tag)] == [(2, pytest.approx(summary[key]))]
    # the config, as the HParams tab reads it
    assert tensorboard_hparams(events) == {
        key: value if isinstance(value, str) else float(value)
        for key, value in hparam_values(flatten(to_dict(config))).items()}
    assert events.Images("curves")[-1].step == 2

    # the running training loss at the loop's log points: each epoch's optimizer steps 0, 2, ...
    steps = tensorboard_events(tmp_path / TensorBoardLogger.FOLDER / TensorBoardLogger.STEPS)
    per_epoch = summary["steps"] // 2
    assert [s.step for s in steps.Scalars("loss/train_step")] == [
        epoch * per_epoch + k + 1 for epoch in range(2) for k in range(0, per_epoch, 2)]
    assert {"loss/train_step", "acc/train_step"} == set(steps.Tags()["scalars"])


@pytest.mark.slow
def test_every_tracker_at_once_keeps_the_run_and_a_resume_continues_it(
        make_config, tmp_path, mlflow_store, offline_wandb):
    """logger=[csv,tensorboard,mlflow,wandb]: 2 epochs, then a resume to 3. Each tracker holds
    metrics.csv's rows and summary.json's test metrics, value for value, in one run."""
    from dltrain.loggers.mlflow_logger import param_value
    from dltrain.loggers.tensorboard import TensorBoardLogger

    def config(epochs):
        return make_config(trainer={"epochs": epochs, "batch_size": 256}, logger={
            "tensorboard": {"name": "tensorboard"},
            "mlflow": {"name": "mlflow", "tracking_uri": mlflow_store, "log_model": True,
                       "tags": {"team": "vision"}},
            "wandb": {"name": "wandb", "log_model": True, "tags": ["unit"]}})

    run_dir = tmp_path / "run"
    train(config(2), run_dir)
    first = runs.read_record(run_dir)["loggers"]
    summary = train(config(3), run_dir, resume=True)
    record = runs.read_record(run_dir)
    rows, columns = csv_columns(run_dir)
    assert [r["epoch"] for r in rows] == [1.0, 2.0, 3.0]

    # run.yaml: the same MLflow and W&B runs at the start and at the resume
    resumed = record["resumes"][-1]["loggers"]
    assert resumed["mlflow"]["run_id"] == first["mlflow"]["run_id"] == record["loggers"]["mlflow"]["run_id"]
    assert resumed["wandb"]["run_id"] == first["wandb"]["run_id"]
    assert first["mlflow"]["tracking_uri"] == mlflow_store and first["wandb"]["mode"] == "offline"

    # MLflow: one run, every epoch once, the test metrics, params, tags and files
    client = mlflow_client(mlflow_store)
    run_id = first["mlflow"]["run_id"]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    for key, values in columns.items():
        history = client.get_metric_history(run_id, key)
        assert [(m.step, m.value) for m in history] == list(zip([1, 2, 3], values)), key
    for key in ("test_loss", "test_acc", "best_val_loss"):
        assert run.data.metrics[key] == summary[key]
    params = flatten(to_dict(config(2)))  # MLflow keeps the params of the run's start
    assert run.data.params == {key: param_value(value, 6000) for key, value in params.items()}
    tags = run.data.tags
    assert tags["dltrain.run_dir"] == str(run_dir) and tags["team"] == "vision"
    assert tags["dltrain.status"] == "completed" and tags["dltrain.changed.trainer.epochs"] == "3 (from epoch 3)"
    git = runs.git_state(Path.cwd())
    assert tags.get("mlflow.source.git.commit") == (git["commit"] if git else None)
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert artifacts == {"summary.json", "run.yaml", "curves.png", "gradflow.png", "checkpoints"}
    assert [a.path for a in client.list_artifacts(run_id, "checkpoints")] == ["checkpoints/best.pt"]
    stored = Path(urlparse(run.info.artifact_uri).path)  # beside the SQLite store
    assert stored.parent.parent.name == "mlartifacts"
    assert (stored / runs.SUMMARY).read_text() == (run_dir / runs.SUMMARY).read_text()

    # W&B: one offline folder per session, one run id; epochs at step=epoch, summary, config
    sessions = wandb_sessions(run_dir)
    assert [s["id"] for s in sessions] == [first["wandb"]["run_id"]] * 2
    assert [sorted(s["history"]) for s in sessions] == [[1, 2], [3]]
    history = {**sessions[0]["history"], **sessions[1]["history"]}
    for key, values in columns.items():
        assert [history[epoch][key] for epoch in (1, 2, 3)] == values, key
    last = sessions[-1]
    assert {k: last["summary"][k] for k in ("test_loss", "test_acc", "best_val_loss", "status")} == \
        {"test_loss": summary["test_loss"], "test_acc": summary["test_acc"],
         "best_val_loss": summary["best_val_loss"], "status": "completed"}
    assert {k: v for k, v in last["config"].items() if not k.startswith(("_", "dltrain."))} == \
        json.loads(json.dumps(flatten(to_dict(config(3)))))  # W&B's config takes the changes
    assert last["config"]["dltrain.run_dir"] == str(run_dir) and last["name"] == "run"
    assert {"summary.json", "run.yaml", "curves.png", "gradflow.png", "checkpoints/best.pt"} <= last["files"]
    assert (Path(record["resumes"][-1]["loggers"]["wandb"]["offline_run"]) / "files" / "run.yaml").is_file()

    # TensorBoard: every epoch once across both sessions
    events = tensorboard_events(run_dir / TensorBoardLogger.FOLDER)
    assert [s.step for s in events.Scalars("loss/val")] == [1, 2, 3]
    assert [s.value for s in events.Scalars("loss/val")] == pytest.approx(columns["val_loss"], rel=1e-6)
    assert events.Scalars("loss/test")[-1].value == pytest.approx(summary["test_loss"])


@pytest.mark.slow
def test_mlflow_added_at_a_resume_gets_the_epochs_before_it(make_config, tmp_path, mlflow_store):
    train(make_config(trainer={"epochs": 1, "batch_size": 256}), tmp_path)
    train(make_config(trainer={"epochs": 2, "batch_size": 256},
                      logger={"mlflow": {"name": "mlflow", "tracking_uri": mlflow_store}}),
          tmp_path, resume=True)
    run_id = recorded(tmp_path, "mlflow")["run_id"]
    _, columns = csv_columns(tmp_path)
    history = mlflow_client(mlflow_store).get_metric_history(run_id, "val_loss")
    assert [(m.step, m.value) for m in history] == list(zip([1, 2], columns["val_loss"]))


def test_an_unreachable_tracking_server_stops_the_run_before_training(make_config, tmp_path):
    pytest.importorskip("mlflow")
    config = make_config(trainer={"epochs": 1, "batch_size": 256}, logger={
        "mlflow": {"name": "mlflow", "tracking_uri": "http://127.0.0.1:9"}})  # nothing listens
    began = time.perf_counter()
    with pytest.raises(UserError) as error:
        train(config, tmp_path)
    assert time.perf_counter() - began < 30  # no retries on the first contact
    message = str(error.value)
    assert "\n" not in message and message.startswith(
        "logger=mlflow cannot use its tracking store http://127.0.0.1:9: the server does not answer")
    assert "logger.mlflow.tracking_uri" in message
    # nothing trained, nothing recorded
    assert not (tmp_path / runs.CHECKPOINTS).exists() and not (tmp_path / runs.METRICS).exists()
    assert not (tmp_path / runs.RECORD).exists()
