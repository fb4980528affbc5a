"""Small defects a first hour with the tool ran into (issue "a first hour that convinces"), one test each."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

from gcdash import plots, results
from gcdash.cli import main, parser

ROOT = Path(__file__).resolve().parent.parent
BASE = ["sweep", "--models", "tiny-cnn", "--data", "tiny", "--n", "6", "--batch-size", "4"]


def _table() -> pd.DataFrame:
    from test_plots import default_layers

    return default_layers()


def test_violins_stop_at_the_data():
    fig = plots.distribution(_table(), "violin")
    assert {t.spanmode for t in fig.data if t.type == "violin"} == {"hard"}  # no density drawn below NISSIM 0


def test_mod_vs_drop_labels_one_point_per_series():
    fig = plots.mod_vs_drop(results.summary(_table()))
    for trace in fig.data:
        assert sum(bool(t) for t in trace.text) == 1  # the largest eps; the others on hover (they overlapped)


def test_help_has_no_raw_rst_backticks():
    texts = [parser().format_help()]
    sub = next(a for a in parser()._actions if a.dest == "command")
    texts += [p.format_help() for p in sub.choices.values()]
    assert not any("`" in t for t in texts)


def test_methods_are_listed_in_aligned_columns(capsys):
    assert main(["methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0]
    for column in ("name", "parameters", "cost"):
        at = header.index(column)
        assert all(line[at - 2 : at] == "  " and line[at] != " " for line in lines[1:]), column


def test_vid_of_one_eps_is_not_a_number(tmp_path, capsys):
    assert main([*BASE, "--eps", "0,8/255", "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c")]) == 0
    assert "n/a" in capsys.readouterr().out
    assert pd.read_csv(tmp_path / "o" / "vid.csv")["vid"].isna().all()


def test_an_unknown_model_is_refused_before_the_cam_library_loads(tmp_path):
    code = (
        "import sys\nfrom gcdash.cli import main\n"
        f"assert main(['sweep', '--models', 'nope', '--out', {str(tmp_path)!r}]) == 2\n"
        "assert 'pytorch_grad_cam' not in sys.modules, 'the CAM library was imported to refuse a name'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True)


def test_the_dashboard_runs_without_a_file_watcher_and_the_readme_links_inside_the_clone():
    assert 'fileWatcherType = "none"' in (ROOT / ".streamlit" / "config.toml").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "../shared" not in readme and (ROOT / "docs" / "method.md").is_file()


def test_the_server_imports_the_heavy_libraries_before_it_opens():
    """``streamlit run app.py`` finds an st.App in app.py (Streamlit's own discovery) serving the router, whose
    start-up hook imports what the first page needs, so the first visitor does not wait for torch."""
    import ast
    import importlib.util

    from streamlit.web.server.app_discovery import discover_asgi_app

    assert discover_asgi_app(ROOT / "app.py").is_asgi_app
    tree = ast.parse((ROOT / "app.py").read_text())
    warm = next(n.value for n in ast.walk(tree) if isinstance(n, ast.Assign) and n.targets[0].id == "WARM")
    names = [e.value for e in warm.elts]
    assert {"torch", "pytorch_grad_cam"} <= set(names) and all(importlib.util.find_spec(n) for n in names)
    assert (ROOT / "dashboard.py").is_file() and "st.navigation" in (ROOT / "dashboard.py").read_text()
