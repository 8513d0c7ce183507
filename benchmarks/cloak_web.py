"""The cloak web page in a real browser: time from pressing "Segment" to the masks shown, and the
README's screenshot (docs/images/cloak.png).

The page (tasks.inpainting.webapp) is served on 127.0.0.1 with a tiny project's champion: the test
suite's tiny params run through every stage in a tmp folder (~1 min), a network of width 8 at the
internal size 32x48. The same page is then timed with an untrained network of the default params'
shape (width 24, key 32, value 64) at their internal size 64x96: the speed a champion of `make run`
would give (weights do not change the time). Debian's /usr/bin/chromium, driven by Playwright, opens
the real 80-frame 432x240 bmx-trees clip (../shared/fixtures), draws the rider's skeleton on frame 0
by mouse events and presses Segment ``--repeats`` times (the clock stops when the page has drawn the
new round's mask); a corrective stroke on frame 40, Segment, Remove; the screenshot is of that page.
Writes benchmarks/results/cloak_web.{json,md}.

    .venv/bin/python benchmarks/cloak_web.py [--repeats 3] [--no-screenshot]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import FIXTURES, write_tiny_params  # noqa: E402

BMX = FIXTURES / "inpainting" / "object_removal" / "bmx-trees"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def tiny_project(root: Path) -> dict:
    from tasks.core import load_params
    from tasks.core.study import get

    params = load_params(write_tiny_params(root))
    for stage in ("acquire", "clean", "train", "evaluate", "report", "register"):
        get("inpainting").stage_module(stage).run(params)
    return params


def run_page(params, browser, *, net=None, meta=None, repeats: int, screenshot: Path | None) -> dict:
    from models.common.frames import read_mask
    from tasks.inpainting.web import settings
    from tasks.inpainting.webapp import address, make_server, start
    from tests.inpainting.test_web import draw, object_path, segment, show_frame

    masks = sorted((BMX.parent / "bmx-trees_mask").glob("*.png"))
    cfg = settings(params, port=0, videos=[str(BMX.parent)])
    srv, store = make_server(params, cfg, net=net, meta=meta)
    thread = start(srv)
    try:
        page = browser.new_page(viewport={"width": 1120, "height": 700})
        page.goto(address(srv))
        page.wait_for_selector("body[data-ready='1']")
        page.select_option("#videos", "bmx-trees")
        page.click("#open-listed")
        page.wait_for_selector("body[data-shown='0:0']")
        draw(page, object_path(read_mask(masks[0]) > 0))
        times = [segment(page, r) for r in range(1, repeats + 1)]
        show_frame(page, 40, repeats)
        draw(page, object_path(read_mask(masks[40]) > 0))
        t_corr = segment(page, repeats + 1)
        t0 = time.perf_counter()
        page.click("#remove")
        page.wait_for_function("() => !document.getElementById('result-box').hidden", timeout=600_000)
        t_remove = time.perf_counter() - t0
        page.wait_for_function("() => document.getElementById('result').readyState >= 2", timeout=30_000)
        page.eval_on_selector("#result", "v => { v.pause(); v.currentTime = 40 / 24; }")
        time.sleep(0.5)
        if screenshot:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=screenshot)
        sid = page.evaluate("() => document.body.dataset.session")
        internal = list(store.get(sid).session.internal_size)
        page.close()
    finally:
        srv.should_exit = True
        thread.join(10)
        store.close()
    return {"internal_size": internal, "segment_to_masks_shown_s": [round(t, 3) for t in times],
            "median_s": round(statistics.median(times), 3), "correction_round_s": round(t_corr, 3),
            "remove_s": round(t_remove, 3), "n_frames": 80, "size": [432, 240]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-screenshot", action="store_true")
    ap.add_argument("--champion", action="store_true",
                    help="also time this project's registered inpainting champion (after `make run`); "
                         "the screenshot is then of it")
    a = ap.parse_args()
    if not BMX.is_dir() or not Path("/usr/bin/chromium").is_file():
        print(f"needs {BMX} and /usr/bin/chromium (make browser)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    from models.inpainting.network import InpaintingNet

    rows = {}
    with tempfile.TemporaryDirectory(prefix="cloak-web-bench-") as tmp, sync_playwright() as p:
        params = tiny_project(Path(tmp))
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        shot = None if a.no_screenshot else REPO / "docs" / "images" / "cloak.png"
        rows["tiny champion (width 8)"] = run_page(params, browser, repeats=a.repeats, screenshot=None)
        import torch

        torch.manual_seed(0)
        rows["default-params net (width 24), untrained"] = run_page(
            params, browser, net=InpaintingNet(width=24, key_dim=32, value_dim=64),
            meta={"internal_size": [64, 96], "max_memory": 8}, repeats=a.repeats,
            screenshot=None if a.champion else shot)
        if a.champion:  # the project's own champion, as `make cloak` serves it
            from tasks.core import load_params

            rows["this project's champion (make run)"] = run_page(load_params(REPO / "params.yaml"), browser,
                                                                 repeats=a.repeats, screenshot=shot)
        browser.close()
    out = REPO / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "cloak_web.json").write_text(json.dumps(rows, indent=1))
    lines = ["| model | internal size | Segment → masks shown (s, each press) | median | correction round | Remove |",
             "|---|---|---|---|---|---|"]
    for k, r in rows.items():
        lines.append(f"| {k} | {r['internal_size'][0]}×{r['internal_size'][1]} | "
                     f"{', '.join(f'{t:.2f}' for t in r['segment_to_masks_shown_s'])} | {r['median_s']:.2f} | "
                     f"{r['correction_round_s']:.2f} | {r['remove_s']:.2f} |")
    (out / "cloak_web.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
