"""The command line starts without the heavy libraries, and its help stays complete.

Structural checks, not timings (``benchmarks/bench_cli_startup.py`` times it): in a fresh interpreter, importing
``zeroloss.cli``, building the click command and printing ``--help`` of the app and of every command must leave
torch, numpy, pandas, matplotlib, scipy, numba (and yaml, jinja2: only commands that run need them) out of
``sys.modules``; a sweep worker that trains a batch must leave matplotlib, scipy.stats and torch._dynamo out
(``benchmarks/bench_worker_startup.py`` times that). A failure names the modules that were imported.
"""

from __future__ import annotations

import json
import subprocess
import sys

import typer.main
from typer.testing import CliRunner

from zeroloss.cli import COMMAND_MODULES, app

#: Never imported by ``import zeroloss.cli`` or any ``--help`` (torch alone costs ~1.5 s). Not listed: pydantic, which
#: typer itself imports to coerce option values when it builds a command's parameters.
HEAVY = ("torch", "numpy", "pandas", "matplotlib", "scipy", "numba", "yaml", "jinja2", "sklearn", "sympy")

_PROBE = """
import json, sys
import typer.main
import zeroloss.cli
command = typer.main.get_command(zeroloss.cli.app)
outputs = {}
for argv in [["--help"]] + [[name, "--help"] for name in sorted(command.commands)]:
    try:
        command.main(argv, prog_name="zeroloss", standalone_mode=False)
    except SystemExit:
        pass
print(json.dumps({"commands": sorted(command.commands),
                  "loaded": sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)}))
"""


def test_cli_import_and_every_help_leave_the_heavy_libraries_unimported():
    code = f"HEAVY = {HEAVY!r}\n" + _PROBE
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(report["commands"]) == len(COMMAND_MODULES), "every command module registered a command"
    assert report["loaded"] == [], f"imported by `import zeroloss.cli` or a --help: {report['loaded']}"


def test_import_zeroloss_alone_is_light_and_resolves_names_on_use():
    code = ("import sys, zeroloss; light = not any(m in sys.modules for m in ('torch', 'numpy', 'pandas')); "
            "f = zeroloss.spectrum; import zeroloss.spectra; "
            "print(light, callable(zeroloss.spectrum) and zeroloss.spectrum is f, 'torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    # light before use; the public function `spectrum` lives in the module `spectra` (no name clash to work around);
    # using a name imports what it needs
    assert res.stdout.split() == ["True", "True", "True"]


def test_a_worker_that_trains_loads_no_plotting_statistics_or_compiler_stack():
    # what a sweep's worker process does before its first batch (load the registry), then a batch of du2019 (a
    # gram's memory check included): matplotlib, scipy.stats and torch._dynamo (with sympy) are ~2.4 s of a fresh
    # process's start-up that a worker which only trains never uses
    code = ("import json, sys\n"
            "from zeroloss.papers.registry import load_experiments\n"
            "experiment = load_experiments()['du2019.kernel']\n"
            "experiment.run_batch([experiment.specs['tiny'][0]], 'cpu')\n"
            "print(json.dumps(sorted(m for m in ('matplotlib', 'scipy.stats', 'torch._dynamo', 'sympy') "
            "if m in sys.modules)))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout.strip().splitlines()[-1]) == []


def test_every_command_help_lists_every_option_with_its_default():
    command = typer.main.get_command(app)  # typer's own click (vendored in typer 0.29): duck-typed here
    runner = CliRunner()
    for name, sub in command.commands.items():
        res = runner.invoke(app, [name, "--help"], env={"COLUMNS": "200"})
        assert res.exit_code == 0, (name, res.output)
        for param in sub.params:
            if param.param_type_name == "option":
                assert any(opt in res.output for opt in param.opts), (name, param.opts)
                default = param.default
                if param.required or param.show_default is False or default is None or default is False \
                        or default in ("", [], ()):  # typer shows no "[default: ]" for an empty default
                    continue
                # typer prints "[default: …]" after every option that has one (a flag's default: its name, no dashes)
                text = param.opts[0].lstrip("-") if isinstance(default, bool) else str(default)
                assert f"[default: {text}]" in " ".join(res.output.split()), (name, param.opts, default)
            else:
                assert param.name.lower() in res.output.lower(), (name, param.name)


def test_version_prints_the_metadata_version_and_the_checkout_commit():
    from importlib.metadata import version

    from zeroloss.version import source_commit

    source_commit.cache_clear()  # computed once per process: read it now, next to the git call below
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0, res.output
    line = res.stdout.strip()
    assert line.startswith(f"zeroloss {version('zeroloss')}")
    commit = source_commit()
    if commit is None:  # an installed wheel: no commit to show
        assert line == f"zeroloss {version('zeroloss')}"
        return
    head = subprocess.run(["git", "-C", str(__import__("pathlib").Path(__file__).parent), "rev-parse", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert commit.split("+")[0] == head[:12] and line.endswith(f"(commit {commit})")
