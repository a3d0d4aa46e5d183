"""User plugins: a component registered in the user's own module reaches `train`, `study run`
(in-process, the spawned pool's workers, Ray tasks) by ``--plugin``, by a spec's ``plugins``
and by an installed ``sparseflow.plugins`` entry point; bad plugins are refused in one line."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import yaml

import sparseflow  # noqa: F401  (fills the registries)
from sparseflow import plugins
from sparseflow.errors import ConfigError
from sparseflow.registry import ACTIVATIONS, Registry
from sparseflow.studies.spec import StudySpec

from tests.conftest import tiny
from tests.test_bad_input import _one_error, _run

SRC = str(Path(__file__).resolve().parents[1] / "src")

MISH = '''
from torch import nn

from sparseflow.registry import ACTIVATIONS


def register():
    """Entry-point form: register when called."""

    @ACTIVATIONS.register("mish")
    def mish(num_features: int) -> nn.Module:
        """Mish (Misra 2019): x * tanh(softplus(x))."""
        return nn.Mish()
'''


def _readme_plugin() -> str:
    """The README's example plugin module (the module form: it registers at import)."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = text.split("<!-- plugin-example:start -->", 1)[1]
    block = block.split("<!-- plugin-example:end -->", 1)[0]
    return block.split("```python\n", 1)[1].split("```", 1)[0]


MISH_MODULE = _readme_plugin()


@pytest.fixture(autouse=True)
def _fresh_plugin_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no plugin loaded in this process (and leaves none behind: a
    remembered test module would be handed to the workers of later tests' studies)."""
    monkeypatch.setattr(plugins, "_LOADED", [])
    monkeypatch.setattr(plugins, "_ENTRY_POINTS_DONE", set())


def _module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, text: str) -> str:
    (tmp_path / f"{name}.py").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name


# --- loading in this process ---------------------------------------------------------------

def test_modules_load_once_in_order_and_are_remembered(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    counter = _module(tmp_path, monkeypatch, "plug_counter",
                      "import builtins\nbuiltins.PLUG_IMPORTS = "
                      "getattr(builtins, 'PLUG_IMPORTS', 0) + 1\n")
    import builtins

    monkeypatch.setattr(builtins, "PLUG_IMPORTS", 0, raising=False)
    assert plugins.load_plugins([counter, " plug_counter "]) == [counter, counter]
    plugins.load_plugins([counter])
    assert builtins.PLUG_IMPORTS == 1  # imported once however often it is named
    assert plugins.loaded_plugins() == [counter]
    assert plugins.merge(["b", "a"], ["a", "c"], ()) == ["b", "a", "c"]


def test_unimportable_plugin_is_one_line_with_the_fix() -> None:
    with pytest.raises(plugins.PluginError) as err:
        plugins.load_plugins(["no_such_plugin_xyz"])
    assert str(err.value) == (
        "cannot import plugin 'no_such_plugin_xyz': ModuleNotFoundError: No module named "
        "'no_such_plugin_xyz'; check the module name and that it is installed or on PYTHONPATH")
    assert plugins.loaded_plugins() == []


def test_plugin_failing_at_import_names_its_error(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    bad = _module(tmp_path, monkeypatch, "plug_broken", "x = 1 / 0\n")
    with pytest.raises(plugins.PluginError, match=r"^cannot import plugin 'plug_broken': "
                       r"ZeroDivisionError: division by zero; fix the error in the "
                       r"plugin's module$"):
        plugins.load_plugins([bad])


@pytest.mark.parametrize("name", ["mypkg/components.py", "", "my-pkg", "a..b"])
def test_a_path_or_malformed_name_is_refused(name: str) -> None:
    with pytest.raises(plugins.PluginError, match="is no module name; give a dotted Python "
                       "module name"):
        plugins.load_plugins([name])


def test_a_plugin_registering_an_existing_name_is_refused(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    dup = _module(tmp_path, monkeypatch, "plug_dup",
                  "from torch import nn\nfrom sparseflow.registry import ACTIVATIONS\n"
                  "ACTIVATIONS.register('relu')(lambda n: nn.ReLU())\n")
    before = ACTIVATIONS.get("relu")
    with pytest.raises(plugins.PluginError) as err:
        plugins.load_plugins([dup])
    assert str(err.value) == (
        "plugin 'plug_dup': duplicate activation name 'relu': already registered by "
        "sparseflow.models.activations; register yours under another name")
    assert ACTIVATIONS.get("relu") is before  # the built-in stays


def test_registry_duplicate_is_a_config_error_naming_the_owner() -> None:
    reg: Registry[object] = Registry("widget")
    reg.register("a")(test_registry_duplicate_is_a_config_error_naming_the_owner)
    with pytest.raises(ConfigError, match=r"^duplicate widget name 'a': already registered by "
                       r"tests\.test_plugins; register yours under another name$"):
        reg.register("a")(len)


def test_entry_points_module_and_callable_load_once(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    mod = _module(tmp_path, monkeypatch, "plug_ep",
                  "CALLS = []\nIMPORTED = True\ndef setup():\n    CALLS.append(1)\n")
    eps = [EntryPoint("b", f"{mod}:setup", plugins.ENTRY_POINT_GROUP),
           EntryPoint("a", mod, plugins.ENTRY_POINT_GROUP)]
    seen_groups = []

    def fake(group: str) -> list[EntryPoint]:
        seen_groups.append(group)
        return eps

    monkeypatch.setattr(plugins, "entry_points", fake)
    assert plugins.load_entry_points() == ["a", "b"]
    plugins.load_plugins()
    assert seen_groups == ["sparseflow.plugins"] * 2
    assert sys.modules[mod].CALLS == [1]  # the callable ran once, the module was imported
    assert plugins.loaded_plugins() == []  # entry points load themselves in every worker


def test_broken_entry_point_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = [EntryPoint("gone", "no_such_ep_module_xyz", plugins.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(plugins, "entry_points", lambda group: eps)
    with pytest.raises(plugins.PluginError, match=r"^cannot import plugin 'gone' \(entry point "
                       r"sparseflow.plugins\) 'no_such_ep_module_xyz': ModuleNotFoundError"):
        plugins.load_plugins()


def test_spec_plugins_field_validates_names_and_keeps_the_plan(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    from sparseflow.studies import expand

    from tests.test_studies_plan import spec_dict

    with pytest.raises(ValueError, match="is no module name"):
        StudySpec.model_validate(spec_dict(plugins=["a/b.py"]))
    counter = _module(tmp_path, monkeypatch, "plug_spec", "LOADED = True\n")
    with_plugins = expand(StudySpec.model_validate(spec_dict(plugins=[counter])))
    plain = expand(StudySpec.model_validate(spec_dict()))
    assert counter in sys.modules  # expand loaded the spec's plugins
    # a spec's plugins are no part of any run's identity, nor of the study's
    assert [r.run_key for r in with_plugins.runs] == [r.run_key for r in plain.runs]
    assert with_plugins.fingerprint == plain.fingerprint


def test_ray_task_names_its_node_when_a_plugin_is_missing(tmp_path: Path) -> None:
    from sparseflow.studies import ray_backend as rb

    with pytest.raises(plugins.PluginError, match=r"^cannot import plugin 'no_such_xyz': .*"
                       r"\(on Ray node .+: install the plugin on every node"):
        rb._run_group(lambda items, runs_dir: [], [], str(tmp_path), ("no_such_xyz",))


# --- the command line ------------------------------------------------------------------------

def _spec(tmp_path: Path, **over) -> Path:
    spec = {"name": "mish", "base": tiny(model={"hidden_layers": 1, "activation": "mish"},
                                         train={"epochs": 2}, data={"num_samples": 400}),
            "scsdc": {"sparse_width": 16, "dense_widths": [8]}, "seeds": 1, **over}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize("command", [["study", "run", "SPEC", "--dir", "DIR"],
                                     ["study", "plan", "SPEC"], ["train", "CFG", "--out", "DIR"],
                                     ["reproduce", "bn", "--dir", "DIR"]])
def test_cli_refuses_an_unimportable_plugin_before_anything(tmp_path: Path, command: list[str],
                                                            capsys) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny()))
    subs = {"SPEC": str(_spec(tmp_path)), "CFG": str(cfg), "DIR": str(tmp_path / "out")}
    argv = [subs.get(a, a) for a in command] + ["--plugin", "no_such_plugin_xyz"]
    code, err = _run(argv, capsys)
    _one_error(code, err, "cannot import plugin 'no_such_plugin_xyz': ModuleNotFoundError: "
               "No module named 'no_such_plugin_xyz'; check the module name and that it is "
               "installed or on PYTHONPATH")
    assert not (tmp_path / "out").exists()


def test_without_the_plugin_the_spec_names_an_unknown_activation(tmp_path: Path,
                                                                 capsys) -> None:
    code, err = _run(["study", "run", str(_spec(tmp_path)), "--dir", str(tmp_path / "s")],
                     capsys)
    _one_error(code, err, "unknown activation 'mish'")


def _cli(args: list[str], cwd: Path, path: list[Path], timeout: float = 240
         ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join([SRC, *map(str, path)])
    return subprocess.run([sys.executable, "-m", "sparseflow", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _check_runs_used_mish(study: Path) -> None:
    kinds = []
    for run in (study / "runs").iterdir():
        cfg = json.loads((run / "config.json").read_text())
        assert cfg["config"]["model"]["activation"] == "mish"
        summary = json.loads((run / "summary.json").read_text())  # present: the run finished
        assert summary["epochs"] == 2
        kinds.append(summary["kind"])
    assert sorted(kinds) == ["dense", "sparse"]


def test_study_run_with_plugin_in_spawned_workers_then_resumed_by_the_spec(tmp_path: Path
                                                                           ) -> None:
    plug = tmp_path / "plug"
    plug.mkdir()
    (plug / "mish_plugin.py").write_text(MISH_MODULE)
    spec = _spec(tmp_path)
    # --jobs 2 and two runs of different shapes: two groups, so the spawned pool trains them
    done = _cli(["study", "run", str(spec), "--dir", "s", "--plugin", "mish_plugin",
                 "--jobs", "2"], tmp_path, [plug])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 runs finished, 0 failed, 0 already done, of 2 planned" in done.stdout
    _check_runs_used_mish(tmp_path / "s")
    # the same study named by a spec that loads the plugin itself: same run ids, nothing to do
    spec_with = _spec(tmp_path, plugins=["mish_plugin"])
    again = _cli(["study", "run", str(spec_with), "--dir", "s", "--jobs", "2"], tmp_path,
                 [plug])
    assert again.returncode == 0, again.stderr[-2000:]
    assert "0 runs finished, 0 failed, 2 already done, of 2 planned" in again.stdout
    listed = _cli(["list", "activations", "--plugin", "mish_plugin"], tmp_path, [plug])
    assert listed.returncode == 0 and "Mish (Misra 2019)" in listed.stdout


def _dist_with_entry_point(root: Path) -> Path:
    """A module and an installed-looking distribution declaring it as a sparseflow plugin
    (importlib.metadata finds ``*.dist-info`` folders on sys.path)."""
    root.mkdir()
    (root / "mish_ep_plugin.py").write_text(MISH)
    info = root / "mish_ep_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mish-ep-plugin\n"
                                   "Version: 0.1\n")
    (info / "entry_points.txt").write_text("[sparseflow.plugins]\nmish = "
                                           "mish_ep_plugin:register\n")
    return root


def test_study_run_with_an_entry_point_plugin(tmp_path: Path) -> None:
    root = _dist_with_entry_point(tmp_path / "site")
    done = _cli(["study", "run", str(_spec(tmp_path)), "--dir", "s", "--jobs", "2"], tmp_path,
                [root])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 runs finished, 0 failed" in done.stdout
    _check_runs_used_mish(tmp_path / "s")
    trained = _cli(["train", "--set", "model.activation=mish", "--set", "train.epochs=1",
                    "--set", "data.num_samples=300", "--out", "r", "-q"], tmp_path, [root])
    assert trained.returncode == 0, trained.stderr[-2000:]
    (cfg,) = (tmp_path / "r").glob("*/config.json")
    assert json.loads(cfg.read_text())["config"]["model"]["activation"] == "mish"


#: Seconds the Ray end-to-end check may take before it is reported too slow for the suite.
RAY_BUDGET_S = 90


@pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                    reason="the ray executor needs Ray: pip install 'sparseflow[ray]'")
def test_ray_tasks_load_the_plugin(tmp_path: Path) -> None:
    """A driver-started local cluster: its workers inherit the driver's PYTHONPATH (on a real
    cluster the plugin must be installed on every node, as sparseflow is)."""
    plug = tmp_path / "plug"
    plug.mkdir()
    (plug / "mish_plugin.py").write_text(MISH_MODULE)
    try:  # about 10 s here, most of it starting the cluster
        done = _cli(["study", "run", str(_spec(tmp_path)), "--dir", "s", "--plugin",
                     "mish_plugin", "--executor", "ray", "--jobs", "2"], tmp_path, [plug],
                    timeout=RAY_BUDGET_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"a 2-run study on a local Ray cluster took over {RAY_BUDGET_S} s")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 runs finished, 0 failed" in done.stdout, done.stdout[-2000:]
    _check_runs_used_mish(tmp_path / "s")


def test_an_unknown_component_points_to_plugins() -> None:
    from sparseflow.errors import ConfigError
    from sparseflow.registry import ACTIVATIONS

    with pytest.raises(ConfigError) as exc:
        ACTIVATIONS.check("mish")  # the README's plugin example, close to "swish"
    line = str(exc.value)
    assert line.startswith("unknown activation 'mish'.") and "\n" not in line
    assert line.endswith("Your own activation? Load its module with --plugin MODULE.")
