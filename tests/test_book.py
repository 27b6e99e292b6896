"""The book: Tables 2-4 from the specs, the claim checks, the cross-zoo figure, and an end-to-end
build (every notebook under papermill, jupyter-book -W, pages opened in headless Chromium)."""

from __future__ import annotations

import inspect
import json
import math
import re
import os
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from phasezoo.publish.book import PAGES, retitle, zoo_slug
from phasezoo.analysis.claims import (CLAIMS, INCONCLUSIVE, NOT_REPRODUCED, NOT_TESTABLE, REPRODUCED, ZooContext,
                             best_inside_low_loss, pruning_phase_iv, finetune_phase_iv,
                             best_phase_is_ivb, check_cells, claims_matrix, ensemble_connected,
                             metrics_track_test, phases_emerge, transformer_corner)
from phasezoo.landscape.phases import PhaseThresholds
from phasezoo.analysis.report import hyperparameter_table
from phasezoo.spec import list_zoos, load_spec

# ------------------------------------------------------------------------------------------
# Tables 2-4


def test_hyperparameter_tables_come_from_the_specs():
    specs = [load_spec(z) for z in list_zoos()]
    paper = hyperparameter_table(specs, "paper")
    assert set(paper.columns) == {s.name for s in specs if "paper" in s.profiles}
    r18 = paper["cifar10-resnet18"]
    assert (r18["members"], r18["optimizer"], r18["learning rate"], r18["momentum"], r18["weight decay"],
            r18["epochs"]) == ("192", "sgd", "0.1", "0.9", "0.0005", "150")
    assert r18["load"] == "width: 2, 4, …, 256 (8 values)"
    assert r18["temperature"] == "batch_size: 8, 16, …, 1024 (8 values)"
    assert paper["cifar100-vit"]["weight decay"] == "0.05" and paper["cifar10-vit"]["weight decay"] == "0.0005"
    assert "randaugment" in paper["cifar100-vit"]["augmentation"]
    assert paper["openwebtext-gpt2"]["members"] == "192" and paper["openwebtext-gpt2"]["seeds"] == "1, 2, 3"
    pinn = paper["convection-pinn"]
    assert (pinn["members"], pinn["optimizer"], pinn["learning rate"]) == ("420", "lbfgs", "grid axis")
    assert "history_size=50" in pinn["optimizer options"]
    # every member count is the product of the grid, as the spec expands it
    for s in specs:
        if "paper" in s.profiles:
            assert paper[s.name]["members"] == str(len(s.members("paper")))


# ------------------------------------------------------------------------------------------
# claims, on hand-made cell tables


def _cells(phases, test_error, **cols):
    """A 3 x 3 grid (load 1..3 up, temperature 10..30 across) with the given per-cell values."""
    n = len(phases)
    load = np.repeat([1, 2, 3], 3)[:n]
    temp = np.tile([10, 20, 30], 3)[:n]
    df = pd.DataFrame({"load": load, "temp": temp, "phase": phases, "test_error": test_error})
    for k, v in cols.items():
        df[k] = v
    return df


CTX = ZooContext("z", "classification", "resnet18", "load", "temp", PhaseThresholds(train_loss=0.5, mc_metric="mc_error", mc_reference="mean"))


def test_phase_claims_follow_their_rules():
    good = _cells(["I", "I", "II", "III", "IV-A", "II", "IV-B", "IV-B", "IV-A"],
                  [0.8, 0.7, 0.6, 0.5, 0.3, 0.6, 0.1, 0.12, 0.35])
    assert phases_emerge(good, CTX).status == REPRODUCED
    assert phases_emerge(good.assign(phase="I"), CTX).status == NOT_REPRODUCED
    assert best_phase_is_ivb(good, CTX).status == REPRODUCED
    worse = good.assign(test_error=good["test_error"][::-1].to_numpy())
    assert best_phase_is_ivb(worse, CTX).status == NOT_REPRODUCED
    assert best_phase_is_ivb(good[good["phase"] != "IV-B"], CTX).status == NOT_TESTABLE

    # the best quarter (3 cells: 0.1, 0.12, 0.3) inside a larger low-loss region (5 cells)
    loss = [0.9, 0.9, 0.9, 0.9, 0.2, 0.9, 0.1, 0.1, 0.3]
    assert best_inside_low_loss(good.assign(train_loss=loss), CTX).status == REPRODUCED
    loss_out = list(loss)
    loss_out[4] = 0.9  # the 0.3-error cell leaves the low-loss region
    assert best_inside_low_loss(good.assign(train_loss=loss_out), CTX).status == NOT_REPRODUCED

    err = np.array(good["test_error"])
    tracked = good.assign(hessian_trace=10 + 100 * err, cka=1 - err, mc_error=-err)
    v = metrics_track_test(tracked, CTX)
    assert v.status == REPRODUCED and "trace 1" in v.evidence
    # |mc| counts: a positive mc (under-trained end points) is as bad as a barrier
    assert metrics_track_test(tracked.assign(mc_error=err), CTX).status == REPRODUCED
    assert metrics_track_test(tracked.assign(mc_error=0.5 - err), CTX).status == NOT_REPRODUCED
    assert metrics_track_test(tracked.assign(cka=err), CTX).status == NOT_REPRODUCED
    assert metrics_track_test(good, CTX).status == NOT_TESTABLE


def test_transformer_corner_and_downstream_claims():
    # width-like load and batch-like temperature (the default directions): the high-temperature,
    # low-load corner is the largest load value (3) at the smallest temperature value (10), as in
    # the paper's Figure 4 (widest models, smallest batch); error jumps 0.1 -> 0.9 there
    cells = _cells(["I"] * 4 + ["IV-B"] * 5, [0.2, 0.2, 0.15, 0.15, 0.15, 0.2, 0.9, 0.1, 0.1])
    vit = ZooContext("v", "classification", "vit", "load", "temp", PhaseThresholds())
    v = transformer_corner(cells, vit)
    assert v.status == REPRODUCED and "from temp 20 to 10" in v.evidence and "at load 3" in v.evidence
    assert transformer_corner(cells, CTX).status == NOT_REPRODUCED  # a ResNet should stay smooth
    # a jump at the opposite corner (smallest width, largest batch) is not the paper's transition
    wrong = cells.assign(test_error=[0.2, 0.2, 0.9, 0.15, 0.15, 0.2, 0.1, 0.1, 0.15])
    assert transformer_corner(wrong, vit).status == NOT_REPRODUCED
    assert transformer_corner(wrong, CTX).status == REPRODUCED
    # PINNs: beta raises the load and the learning rate the temperature, so the corner is the
    # smallest beta (1) at the largest rate (30)
    pinn = ZooContext("p", "pde_convection", "pinn", "load", "temp", PhaseThresholds(),
                      load_direction="increasing", temperature_direction="increasing")
    assert transformer_corner(wrong, pinn).status == NOT_REPRODUCED  # sharp at (1, 30)
    assert transformer_corner(cells, pinn).status == REPRODUCED      # smooth there

    gains = cells.assign(ensemble_gain=[0.0] * 4 + [0.05] * 5)
    assert ensemble_connected(gains, CTX).status == REPRODUCED
    assert ensemble_connected(gains.assign(ensemble_gain=-gains["ensemble_gain"]), CTX).status == NOT_REPRODUCED
    assert ensemble_connected(cells, CTX).status == NOT_TESTABLE


def test_every_claim_runs_and_the_matrix_has_one_mark_per_claim_and_zoo():
    cells = _cells(["I", "II", "III", "IV-A", "IV-B", "IV-B", "I", "II", "III"],
                   [0.9, 0.6, 0.5, 0.3, 0.1, 0.12, 0.8, 0.6, 0.4], train_loss=0.1, hessian_trace=5.0,
                   cka=0.5, mc_error=-0.1)
    a = check_cells(cells, CTX)
    b = check_cells(cells, ZooContext("y", "pde_convection", "pinn", "load", "temp", PhaseThresholds()))
    assert list(a["claim"]) == [c.key for c in CLAIMS]
    assert set(a["status"]) <= {REPRODUCED, NOT_REPRODUCED, NOT_TESTABLE}
    m = claims_matrix(pd.concat([a, b]))
    assert m.shape == (len(CLAIMS), 2) and list(m.columns) == ["z", "y"]
    assert set(m.to_numpy().ravel()) <= {"✔", "✘", "?", "–"}


def test_the_claims_matrix_page_shows_intervals_and_links_each_verdict_to_its_evidence():

    from phasezoo.analysis.claims import claims_matrix_html, plain_doc, transformer_corner

    rows = pd.DataFrame([
        {"claim": "best_phase_is_ivb", "zoo": "z", "status": INCONCLUSIVE, "margin": 0.05, "ci_low": -0.01,
         "ci_high": 0.12, "evidence": "IV-B 0.1 < best other 0.15"},
        {"claim": "pruning_phase_iv", "zoo": "z", "status": REPRODUCED, "margin": 0.2, "ci_low": 0.1,
         "ci_high": 0.3, "evidence": "e"},
        {"claim": "transformer_corner", "zoo": "y", "status": NOT_TESTABLE, "margin": math.nan,
         "ci_low": math.nan, "ci_high": math.nan, "evidence": "no step"}])
    html = claims_matrix_html(rows, {"z": "z-page"})
    cells = re.findall(r'<td class="([^"]+)"><a href="([^"]+)" title="([^"]*)">(.*?)</a>', html)
    assert ("inconclusive", "phases/z-page.html", "IV-B 0.1 &lt; best other 0.15",
            "? +0.05<br><small>[-0.01, +0.12]</small>") in cells
    assert ("reproduced", "downstream/z-page.html", "e", "✔ +0.2<br><small>[+0.1, +0.3]</small>") in cells
    assert ("not-testable", "comparison.html", "no step", "–") in cells
    assert html.count("<tr>") == 1 + 3  # the header and one row per claim
    text = plain_doc(inspect.getdoc(transformer_corner))
    assert ":data:" not in text and "`SHARP_STEP` = 0.25" in text


# ------------------------------------------------------------------------------------------
# the cross-zoo figure


def test_comparison_plot_has_one_row_per_zoo_and_boundaries_on_every_panel():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from phasezoo.analysis.plots import BOUNDARY_LABEL, PANEL_PREFIX, comparison_plot

    a = _cells(["I", "I", "IV-B"] * 3, [0.5, 0.4, 0.1] * 3, train_loss=1.0, hessian_trace=10.0, cka=0.9,
               mc_error=-0.1)
    b = a.drop(columns=["cka"]).assign(mc_loss=0.1)
    fig = comparison_plot([("a", a, "load", "temp", "mc_error"), ("b", b, "load", "temp", "mc_loss")])
    panels = [ax for ax in fig.axes if ax.get_label().startswith(PANEL_PREFIX)]
    assert len(panels) == 11  # 6 for a, 5 for b (no CKA)
    assert all(any(c.get_label() == BOUNDARY_LABEL for c in ax.collections) for ax in panels)
    assert "panel:mc_loss" in {ax.get_label() for ax in panels}
    assert any(t.get_text() == "no cka" for ax in fig.axes for t in ax.texts)
    plt.close(fig)


# ------------------------------------------------------------------------------------------
# book pages


def test_retitle_names_the_zoo_and_keeps_the_old_title(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"),
                                         nbformat.v4.new_markdown_cell("# Phases of a zoo\n\nText.")])
    path = tmp_path / "p.ipynb"
    nbformat.write(nb, path)
    retitle(path, "digits-vit")
    src = nbformat.read(path, as_version=4).cells[1].source
    assert src.startswith("# digits-vit\n") and "*Phases of a zoo*" in src and src.count("\n# ") == 0
    assert zoo_slug("/tmp/x/tiny-pinn.yaml") == "tiny-pinn" and zoo_slug("digits-vit") == "digits-vit"


def test_reader_page_hides_parameters_folds_code_and_names_the_rerun(tmp_path):
    from phasezoo.publish.book import reader_page, rerun_command

    cells = [nbformat.v4.new_markdown_cell("# digits-vit\n\n*Phases*"),
             nbformat.v4.new_code_cell("zoo = 'a'", metadata={"tags": ["parameters"]}),
             nbformat.v4.new_code_cell("zoo = 'digits-vit'", metadata={"tags": ["injected-parameters"]}),
             nbformat.v4.new_code_cell("plot()"),
             nbformat.v4.new_code_cell("show()", metadata={"tags": ["remove-input"]}),
             nbformat.v4.new_markdown_cell("# Another heading")]
    path = tmp_path / "p.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    cmd = rerun_command("02_phases", {"profile": "mini", "root": "data/zoos", "zoo": "digits-vit"})
    assert cmd == "phasezoo notebook 02_phases -p zoo digits-vit -p profile mini"
    assert rerun_command("05_compare", {"profile": "smoke", "root": "/r", "zoos": ["a", "b"]}) == \
        "phasezoo notebook 05_compare -p zoos '[a, b]' -p profile smoke -p root /r"
    reader_page(path, cmd)
    out = nbformat.read(path, as_version=4).cells
    assert [c.metadata.get("tags", []) for c in out[1:5]] == [
        ["parameters", "remove-cell"], ["injected-parameters", "remove-cell"], ["hide-input"], ["remove-input"]]
    assert out[0].source.endswith(f"Re-run this page: `{cmd}`") and "Re-run" not in out[5].source


def test_notebook_sources_carry_their_kernelspec():
    import jupytext

    for source in sorted(Path("notebooks").glob("*.py")):
        nb = jupytext.read(source)
        assert nb.metadata.get("kernelspec", {}).get("name") == "python3", source
        assert "Re-run" not in source.read_text(), source  # the book writes each page's own command


def test_every_notebook_is_a_page_of_the_book():
    assert sorted(p.notebook for p in PAGES) == sorted(p.stem for p in Path("notebooks").glob("*.py"))
    toc = Path("book/_toc.yml").read_text()
    for page in PAGES:
        folder = page.target.rsplit("/", 1)[0] if page.per_zoo else page.target
        assert (f"glob: {folder}/*" if page.per_zoo else f"file: {folder}") in toc, page


def _chromium_or_skip():
    from phasezoo.publish.browser import find_chromedriver, find_chromium

    chromium = find_chromium()
    if not chromium or not find_chromedriver():
        if os.environ.get("PHASEZOO_REQUIRE_CHROMIUM"):
            pytest.fail("PHASEZOO_REQUIRE_CHROMIUM is set but no Chromium or chromedriver was found")
        pytest.skip("no Chromium or chromedriver (apt-get install chromium chromium-driver); "
                    ".ci/run installs them and requires this check")
    return chromium


@pytest.mark.slow
def test_the_book_builds_from_a_small_zoo_and_renders_in_chromium(tmp_path):
    """Train, measure and run downstream on a tiny three-cell PINN zoo; execute every notebook into
    a copy of the book under papermill; build it with jupyter-book -W; open the index and the
    phase pages in headless Chromium and require text and non-empty images."""
    from phasezoo.publish.book import build_html, execute_pages
    from phasezoo.publish.browser import book_pages, check_pages
    from phasezoo.downstream.runner import run_downstream
    from phasezoo.landscape.runner import compute_metrics
    from phasezoo.zoo import train_zoo
    from tests.conftest import write_spec
    from tests.test_domains import _CHEAP, PINN_SPEC

    # three cells: the weight-space probe needs three grid cells to split and cross-validate
    text = PINN_SPEC.replace("epochs: 3", "epochs: 2").replace(
        "grid: {beta: [1, 30], lr: [1.0], seed: [0]}", "grid: {beta: [1, 10, 30], lr: [1.0], seed: [0, 1]}") + _CHEAP
    spec_path = write_spec(tmp_path, text, "tiny-pinn.yaml")
    spec = load_spec(spec_path)
    assert len(spec.members("smoke")) == 6
    root = tmp_path / "zoos"
    train_zoo(spec, "smoke", root, device="cpu")
    compute_metrics(spec, "smoke", root, device="cpu")
    run_downstream(spec, "smoke", root, device="cpu")

    book = tmp_path / "book"
    shutil.copytree("book", book, ignore=shutil.ignore_patterns("_build", "executed"))
    written = execute_pages([str(spec_path)], "smoke", root, book_dir=book, timeout=300,
                            log=lambda _: None)
    assert len(written) == len(PAGES)
    for nb_path in written:
        outputs = [o for c in json.loads(nb_path.read_text())["cells"] for o in c.get("outputs", [])]
        assert not [o for o in outputs if o.get("output_type") == "error"], nb_path
        if nb_path.parent.name in ("phases", "downstream", "appendix") or nb_path.stem == "comparison":
            assert any("image/png" in o.get("data", {}) for o in outputs), f"{nb_path} drew no figure"
    index = build_html(book)
    html = index.parent
    assert (html / "executed" / "phases" / "tiny-pinn.html").is_file()
    assert (html / "_static" / "mathjax" / "tex-chtml.js").is_file()  # formulas render offline

    chromium = _chromium_or_skip()
    pages = book_pages(html)
    # every chapter and every executed page of the table of contents
    expected = {"index.html", "taxonomy.html", "zoos.html", "phases.html", "downstream.html", "wsl.html",
                "reproduce.html", "appendix.html", "executed/zoos.html", "executed/comparison.html",
                "executed/claims.html", *(f"executed/{d}/tiny-pinn.html" for d in ("phases", "downstream", "wsl",
                                                                                   "appendix"))}
    assert expected <= set(pages) and pages[0] == "index.html"
    reports = check_pages(html, pages, chromium=chromium, screenshots=tmp_path / "shots")
    for r in reports:
        assert r.ok, (r.path, r.problem())
        assert Path(r.screenshot).stat().st_size > 0
    by_path = {r.path: r for r in reports}
    for page in ("executed/comparison.html", "executed/phases/tiny-pinn.html", "executed/downstream/tiny-pinn.html"):
        assert len(by_path[page].images) >= 1, page
    # the claims page: a verdict cell links to the zoo's phase page, which exists
    claims = (html / "executed" / "claims.html").read_text()
    assert 'href="phases/tiny-pinn.html"' in claims and (html / "executed" / "phases" / "tiny-pinn.html").is_file()
    # result pages show no parameter cells and name their own re-run command
    phase_page = (html / "executed" / "phases" / "tiny-pinn.html").read_text()
    words = " ".join(re.sub(r"<[^>]+>", " ", phase_page).split())  # the page's text, markup removed
    assert f"Re-run this page: phasezoo notebook 02_phases -p zoo {spec_path} -p profile smoke -p root {root}" in words
    assert "injected-parameters" not in phase_page and "-p downloads" not in phase_page
    # each zoo page offers the member table, the epochs and the ptmz export, which are in the build
    for name in ("tiny-pinn-smoke-members.csv", "tiny-pinn-smoke-epochs.csv", "tiny-pinn-smoke-ptmz.zip",
                 "tiny-pinn-smoke-hf.zip"):
        assert f'href="../../downloads/tiny-pinn/{name}"' in phase_page, name
        assert (html / "downloads" / "tiny-pinn" / name).stat().st_size > 0, name
    members = pd.read_csv(html / "downloads" / "tiny-pinn" / "tiny-pinn-smoke-members.csv")
    assert len(members) == 6 and {"member", "phase", "train_loss"} <= set(members.columns)


def test_the_chromium_check_fails_on_a_broken_image_and_a_missing_page(tmp_path):
    from phasezoo.publish.browser import check_pages

    chromium = _chromium_or_skip()
    from PIL import Image

    Image.new("RGB", (20, 10), "red").save(tmp_path / "ok.png")
    (tmp_path / "good.html").write_text("<html><body><p>text</p><img src='ok.png'></body></html>")
    (tmp_path / "broken.html").write_text("<html><body><p>text</p><img src='missing.png'></body></html>")
    (tmp_path / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=good.html" />')
    good, broken, missing, index = check_pages(tmp_path, ["good.html", "broken.html", "nope.html", "index.html"],
                                               chromium=chromium, screenshots=tmp_path / "shots")
    assert good.ok and good.images[0]["natural"] == [20, 10]
    assert not broken.ok and broken.bad_images
    assert not missing.ok and not missing.loaded
    assert index.ok and index.url.endswith("good.html")
    assert Path(good.screenshot).stat().st_size > 0
    assert good.overflow_px == 0 and not good.raw_roles


def test_the_chromium_check_fails_on_a_page_wider_than_the_window_and_on_a_raw_role(tmp_path):
    from phasezoo.publish.browser import WINDOW, check_pages

    chromium = _chromium_or_skip()
    (tmp_path / "wide.html").write_text(f"<html><body><div style='width:{WINDOW[0] + 300}px'>text</div></body></html>")
    (tmp_path / "scrolls.html").write_text(  # a wide table in its own scrolling box is fine
        f"<html><body><div style='overflow-x:auto'><div style='width:{WINDOW[0] + 300}px'>t</div></div></body></html>")
    (tmp_path / "role.html").write_text("<html><body><p>see :data:`SHARP_STEP` and {doc}`taxonomy`</p></body></html>")
    wide, scrolls, role = check_pages(tmp_path, ["wide.html", "scrolls.html", "role.html"], chromium=chromium)
    assert not wide.ok and wide.overflow_px >= 300 and "wider than" in wide.problem()
    assert scrolls.ok, scrolls.problem()
    assert not role.ok and role.raw_roles == [":data:`SHARP_STEP`", "{doc}`taxonomy`"]


def test_phases_emerge_needs_four_of_the_five_phases_and_shows_the_count():
    three = _cells(["I", "II", "IV-B", "IV-B", "unassigned", "II", "I", "IV-B", "II"], [0.5] * 9)
    v = phases_emerge(three, CTX)
    assert v.status == NOT_REPRODUCED and v.evidence.startswith("3 of the 5 phases (needs 4)")
    four = three.assign(phase=["I", "II", "IV-B", "IV-A", "unassigned", "II", "I", "IV-B", "II"])
    assert phases_emerge(four, CTX).status == REPRODUCED


def test_best_phase_and_finetune_compare_ivb_with_the_best_other_phase():
    # IV-B beats the mean of the others but not IV-A, the best other phase: not reproduced
    cells = _cells(["I", "I", "II", "II", "IV-A", "IV-A", "IV-B", "IV-B", "III"],
                   [0.9, 0.8, 0.7, 0.7, 0.10, 0.12, 0.15, 0.17, 0.6])
    v = best_phase_is_ivb(cells, CTX)
    assert v.status == NOT_REPRODUCED and "best other phase, IV-A" in v.evidence
    assert v.margin == pytest.approx(0.11 - 0.16)
    ft = cells.assign(finetune_full_acc=[0.3, 0.3, 0.4, 0.4, 0.8, 0.8, 0.7, 0.7, 0.5])
    assert finetune_phase_iv(ft, CTX).status == NOT_REPRODUCED
    assert finetune_phase_iv(ft.assign(finetune_full_acc=1 - ft["finetune_full_acc"] + 0.0), CTX).status == NOT_REPRODUCED
    ft2 = ft.assign(finetune_full_acc=[0.3, 0.3, 0.4, 0.4, 0.6, 0.6, 0.9, 0.9, 0.5])
    assert finetune_phase_iv(ft2, CTX).status == REPRODUCED


def test_pruning_is_judged_on_retention_not_on_the_score_after_pruning():
    # the counterexample: IV starts at 0.95 and drops 0.30, II starts at 0.60 and drops
    # 0.05. Absolute accuracy after pruning favours IV (0.65 > 0.55); retention does not
    phases = ["II"] * 4 + ["IV-B"] * 5
    err = [0.40] * 4 + [0.05] * 5
    cells = _cells(phases, err, **{"prune_acc_0.9": [0.55] * 4 + [0.65] * 5,
                                   "prune_ft_acc_0.9": [0.58] * 4 + [0.90] * 5,
                                   "prune_noemb_acc_0.9": [0.57] * 4 + [0.76] * 5})
    v = pruning_phase_iv(cells, CTX)
    assert v.status == NOT_REPRODUCED
    assert v.margin == pytest.approx(0.65 / 0.95 - 0.55 / 0.60)
    # the fine-tuned retention, and the one without embeddings, are reported beside it
    assert "0.9 fine-tuned: IV 0.947 vs I–III 0.967" in v.evidence
    assert "0.9 without embeddings: IV 0.8 vs I–III 0.95" in v.evidence
    kept = cells.assign(**{"prune_acc_0.9": [0.30] * 4 + [0.90] * 5})
    assert pruning_phase_iv(kept, CTX).status == REPRODUCED


def _members_for(cells, spread, seed=0):
    """Three members a cell around the cell's test error, with the given spread."""
    rng = np.random.default_rng(seed)
    rows = []
    for _, c in cells.iterrows():
        for s in range(3):
            rows.append({"load": c["load"], "temp": c["temp"], "seed": s,
                         "test_error": c["test_error"] + rng.normal(0, spread)})
    return pd.DataFrame(rows)


def test_verdicts_get_a_bootstrap_interval_and_can_be_inconclusive():
    cells = _cells(["I", "I", "II", "II", "IV-A", "IV-A", "IV-B", "IV-B", "III"],
                   [0.9, 0.8, 0.7, 0.7, 0.20, 0.22, 0.10, 0.12, 0.6])
    only = [c for c in CLAIMS if c.key == "best_phase_is_ivb"]
    # seeds that agree: the interval excludes 0 and the verdict is kept
    tight = check_cells(cells, CTX, only, _members_for(cells, 0.002), draws=100).iloc[0]
    assert tight["status"] == REPRODUCED and 0 < tight["ci_low"] <= tight["margin"] <= tight["ci_high"]
    # seeds that scatter by far more than the 0.1 gap between IV-B and IV-A (two phases only, so
    # that the best other phase is not picked from noise): inconclusive
    two = _cells(["IV-A"] * 4 + ["IV-B"] * 5, [0.2] * 4 + [0.1] * 5)
    loose = check_cells(two, CTX, only, _members_for(two, 0.6), draws=200).iloc[0]
    assert loose["status"] == INCONCLUSIVE and loose["ci_low"] < 0 < loose["ci_high"]
    # a not-testable claim gets no interval; without members, the point estimate decides
    none = check_cells(cells[cells.phase != "IV-B"], CTX, only, _members_for(cells, 0.01), draws=20).iloc[0]
    assert none["status"] == NOT_TESTABLE and np.isnan(none["ci_low"])
    assert check_cells(cells, CTX, only).iloc[0]["status"] == REPRODUCED


# ------------------------------------------------------------------------------------------
# every rule: reproduced, not reproduced, and inconclusive when the seeds cannot tell


def _noisy_members(cells, spread, columns, seed=0, n=3):
    """``n`` members a cell, each of ``columns`` the cell's value plus N(0, spread²) noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for _, c in cells.iterrows():
        for s in range(n):
            rows.append({"load": c["load"], "temp": c["temp"], "seed": s,
                         **{k: c[k] + rng.normal(0, spread) for k in columns}})
    return pd.DataFrame(rows)


def _status(cells, ctx, key, members=None, draws=200):
    rule = [c for c in CLAIMS if c.key == key]
    return check_cells(cells, ctx, rule, members, draws=draws).iloc[0]


PINN_CTX = ZooContext("p", "pde_convection", "pinn", "load", "temp", PhaseThresholds(),
                      load_direction="increasing", temperature_direction="increasing")
PHASES9 = ["I", "I", "II", "II", "III", "IV-A", "IV-B", "IV-B", "IV-A"]


def test_pinn_good_is_sharp_reads_the_sign_of_the_trace_correlation():
    err = np.linspace(0.1, 0.9, 9)
    sharp_good = _cells(PHASES9, err, hessian_trace=100 - 100 * err)
    assert _status(sharp_good, PINN_CTX, "pinn_good_is_sharp")["status"] == REPRODUCED
    assert _status(sharp_good.assign(hessian_trace=100 * err), PINN_CTX, "pinn_good_is_sharp")["status"] == NOT_REPRODUCED
    assert _status(sharp_good, CTX, "pinn_good_is_sharp")["status"] == NOT_TESTABLE  # not a PINN zoo
    # seeds scattered far more than the cells differ: the correlation's sign is unknown
    flat = sharp_good.assign(test_error=0.5 + 0.001 * np.arange(9))
    row = _status(flat, PINN_CTX, "pinn_good_is_sharp", _noisy_members(flat, 0.3, ["test_error"]))
    assert row["status"] == INCONCLUSIVE and row["ci_low"] < 0 < row["ci_high"]


def test_ensemble_region_larger_counts_cells_at_the_best_quarters_score():
    err = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.1, 0.12, 0.3])
    cells = _cells(PHASES9, err)
    # q = mean score of the best quarter (0.9, 0.88, 0.7: 0.827); ensembles lift 5 cells above it
    lifted = cells.assign(ensemble_acc=np.where(err <= 0.5, 0.95, 1 - err))
    v = _status(lifted, CTX, "ensemble_region_larger")
    assert v["status"] == REPRODUCED and v["margin"] == 3.0
    same = cells.assign(ensemble_acc=1 - err - 0.01)
    assert _status(same, CTX, "ensemble_region_larger")["status"] == NOT_REPRODUCED
    assert _status(cells, CTX, "ensemble_region_larger")["status"] == NOT_TESTABLE
    # ensembles just at the single models' level, seeds that scatter: inconclusive
    tied = cells.assign(ensemble_acc=1 - err)
    row = _status(tied, CTX, "ensemble_region_larger", _noisy_members(tied, 0.2, ["test_error"]))
    assert row["status"] == INCONCLUSIVE


@pytest.mark.parametrize("key,column,better,worse", [
    ("wise_ft_high_temperature", "wise_ft_gain", ("I", "II"), ("IV-A", "IV-B")),
    ("rebasin_connected", "rebasin_gain", ("II", "IV-A", "IV-B"), ("I", "III")),
    ("ensemble_connected", "ensemble_gain", ("II", "IV-A", "IV-B"), ("I", "III")),
])
def test_group_comparisons_decide_on_the_gap_and_its_interval(key, column, better, worse):
    gains = np.array([0.05 if p in better else 0.0 if p in worse else np.nan for p in PHASES9])
    cells = _cells(PHASES9, 0.3, **{column: gains})
    members = _noisy_members(cells, 0.002, [column, "test_error"])
    row = _status(cells, CTX, key, members)
    assert row["status"] == REPRODUCED and row["margin"] == pytest.approx(0.05) and row["ci_low"] > 0
    flipped = cells.assign(**{column: -gains})
    assert _status(flipped, CTX, key, _noisy_members(flipped, 0.002, [column]))["status"] == NOT_REPRODUCED
    # the gap is small against the spread between a group's cells (resampled within phases)
    # and, for a member-level gain, between seeds: inconclusive
    spread = cells.assign(**{column: np.where(np.isnan(gains), np.nan,
                                              0.005 + np.array([0.3, -0.3, 0.25, -0.25, 0.2, -0.2, 0.3, -0.3, 0.1]))})
    row = _status(spread, CTX, key, _noisy_members(spread, 0.3, [column]))
    assert row["status"] == INCONCLUSIVE and row["ci_low"] < 0 < row["ci_high"]
    assert _status(cells.drop(columns=column), CTX, key)["status"] == NOT_TESTABLE


def test_rules_on_grid_positions_and_transfer_become_inconclusive_under_noisy_seeds():
    # best_inside_low_loss: which cells are "best" changes between seed draws
    err = np.array([0.50, 0.50, 0.50, 0.50, 0.51, 0.50, 0.49, 0.50, 0.50])
    cells = _cells(PHASES9, err, train_loss=[0.9, 0.1, 0.1, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1])
    assert _status(cells, CTX, "best_inside_low_loss",
                   _noisy_members(cells, 0.2, ["test_error"]))["status"] == INCONCLUSIVE
    # metrics_track_test: a correlation of test error with metrics it barely depends on
    tracked = cells.assign(hessian_trace=np.arange(9.0), cka=-np.arange(9.0), mc_error=np.arange(9.0))
    assert _status(tracked, CTX, "metrics_track_test",
                   _noisy_members(tracked, 0.3, ["test_error"]))["status"] == INCONCLUSIVE
    # transformer_corner: a step into the corner of 0.17 / 0.8 of the range, just below SHARP_STEP:
    # not sharp with seeds that agree, inconclusive with seeds that scatter
    vit = ZooContext("v", "classification", "vit", "load", "temp", PhaseThresholds())
    corner = _cells(["I"] * 4 + ["IV-B"] * 5, [0.9, 0.2, 0.15, 0.15, 0.15, 0.2, 0.27, 0.1, 0.1])
    assert _status(corner, vit, "transformer_corner",
                   _noisy_members(corner, 0.005, ["test_error"]))["status"] == NOT_REPRODUCED
    assert _status(corner, vit, "transformer_corner",
                   _noisy_members(corner, 0.1, ["test_error"]))["status"] == INCONCLUSIVE
    # finetune_phase_iv and pruning_phase_iv: a gap far inside the seeds' scatter
    ft = _cells(PHASES9, 0.3, finetune_full_acc=[0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.52, 0.52, 0.5])
    assert _status(ft, CTX, "finetune_phase_iv",
                   _noisy_members(ft, 0.3, ["finetune_full_acc"]))["status"] == INCONCLUSIVE
    pr = _cells(PHASES9, 0.3, **{"prune_acc_0.9": [0.5] * 5 + [0.51] * 4})
    assert _status(pr, CTX, "pruning_phase_iv",
                   _noisy_members(pr, 0.3, ["prune_acc_0.9"]))["status"] == INCONCLUSIVE


def test_the_phase_count_is_a_fixed_input_of_the_bootstrap():
    """Phase labels are the phase map's (with their own confidence, phasezoo.landscape.phases);
    the claims' bootstrap resamples seeds and cells' values, not labels, so phases_emerge gets a
    point interval at its margin."""
    cells = _cells(PHASES9, 0.3)
    row = _status(cells, CTX, "phases_emerge", _noisy_members(cells, 0.3, ["test_error"]))
    assert row["status"] == REPRODUCED and row["ci_low"] == row["ci_high"] == row["margin"] == 1.5
