"""The page at / of a real `gan serve --http-port 0`, in a real headless Chromium (Debian's
`chromium`, driven by Playwright through its executable path; no browser is downloaded).

Every check reads the canvases' pixels back and compares them with ONNX Runtime's output for the
same latent and labels, so "shows images" means: shows exactly the model's images.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from serve import latent
from tests.helpers import FASHION_MNIST_CLASSES, NZ, export_generator, reference, reference_latent

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium")

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no `chromium` on PATH (Debian package "
                       "chromium; `make setup` installs it where apt is available)"),
    pytest.mark.timeout(300),
]
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed "
                                 "(pip install -e '.[dev]')")

TIMEOUT_MS = 60_000  # generous: the machine may be loaded; nothing here is timed

# Each canvas's pixels as [H, W, RGB] (alpha is always 255).
PIXELS = """sel => [...document.querySelectorAll(sel)].map(c => {
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height);
  return {w: c.width, h: c.height, data: Array.from(d.data)};
})"""


class HttpServe:
    """`gan serve MODEL --http-port 0` as a process; `url` is the page's address."""

    def __init__(self, model: Path) -> None:
        env = os.environ | {"PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gan", "serve", str(model), "--port", "0", "--http-port", "0",
             "--providers", "cpu", "--model-name", "dcgan", "--grace-s", "1"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()  # "serving ... on HOST:PORT (v2 HTTP on URL)"
        assert "v2 HTTP on http://" in line, line + self.proc.stderr.read()
        self.url = line.split("v2 HTTP on ")[1].split()[0].rstrip(")")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def open_page(browser: Any, url: str) -> Any:
    page = browser.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(url)
    for view in ("#grid", "#walk-strip", "#walk-frame"):
        page.wait_for_selector(f"{view}[data-state=ready]", timeout=TIMEOUT_MS)
    return page


def pixels(page: Any, selector: str) -> np.ndarray:
    """The canvases matching `selector` -> uint8 (n, H, W, 3)."""
    canvases = page.evaluate(PIXELS, selector)
    return np.stack([np.array(c["data"], np.uint8).reshape(c["h"], c["w"], 4)[..., :3]
                     for c in canvases])


def as_pixels(raw: np.ndarray) -> np.ndarray:
    """The model's raw output -> uint8 (n, H, W, 3) as the page should draw it."""
    if raw.dtype == np.uint8:  # (n, H, W, C)
        img = raw
    else:  # float (n, C, H, W) in [-1, 1]
        img = np.clip(np.round((raw.transpose(0, 2, 3, 1) + 1) * 127.5), 0, 255).astype(np.uint8)
    return np.repeat(img, 3, axis=3) if img.shape[3] == 1 else img


def assert_shows(shown: np.ndarray, raw: np.ndarray) -> None:
    """Drawn pixels equal the model's, within one level (a batched and a batch-1 run may differ
    in the last float bit, which can move a value across a rounding boundary)."""
    want = as_pixels(raw)
    assert shown.shape == want.shape
    assert np.abs(shown.astype(int) - want.astype(int)).max() <= 1


def wait_for(page: Any, selector: str, **data: str) -> None:
    attrs = "".join(f'[data-{k}="{v}"]' for k, v in data.items())
    page.wait_for_selector(f"{selector}{attrs}[data-state=ready]", timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def cond_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_generator(tmp_path_factory.mktemp("page"), "g32_cond", lively=True)


@pytest.fixture(scope="module")
def cond_server(cond_model: Path) -> Iterator[HttpServe]:
    s = HttpServe(cond_model)
    yield s
    s.stop()


@pytest.fixture
def page(browser: Any, cond_server: HttpServe) -> Iterator[Any]:
    p = open_page(browser, cond_server.url + "?seed=7&a=1&b=2")  # no ?model=: the page asks
    yield p
    assert p.errors == []
    p.close()


def captions(page: Any, selector: str) -> list[str]:
    return page.eval_on_selector_all(f"{selector} figcaption", "els => els.map(e => e.textContent)")


def test_the_page_shows_the_seeds_images_and_describes_the_model(page, cond_model):
    grid = pixels(page, "#grid canvas")
    assert len(grid) == 20  # two rows of the 10 classes
    assert_shows(grid, reference(cond_model, 7, 20, [i % 10 for i in range(20)]))
    assert captions(page, "#grid") == list(FASHION_MNIST_CLASSES) * 2
    about = page.inner_text("#about")
    for text in ("dcgan", "32 × 32, grey", "fashion-mnist", "training step", "cpu", "Sneaker"):
        assert text in about
    assert page.get_attribute("#class-label", "hidden") is None


def test_a_click_gives_a_different_grid(page, cond_model):
    before = pixels(page, "#grid canvas")
    for control in ("#grid", "#new-seed"):
        old = page.get_attribute("#grid", "data-seed")
        page.click(control)
        page.wait_for_function(f"document.querySelector('#grid').dataset.seed !== '{old}' && "
                               "document.querySelector('#grid').dataset.state === 'ready'",
                               timeout=TIMEOUT_MS)
        seed = int(page.get_attribute("#grid", "data-seed"))
        after = pixels(page, "#grid canvas")
        assert np.abs(after.astype(int) - before.astype(int)).mean() > 1  # visibly different
        assert_shows(after, reference(cond_model, seed, 20, [i % 10 for i in range(20)]))
        before = after


def test_the_class_picker_changes_the_images(page, cond_model):
    before = pixels(page, "#grid canvas")
    sneaker = FASHION_MNIST_CLASSES.index("Sneaker")
    page.select_option("#class", str(sneaker))
    wait_for(page, "#grid", label=str(sneaker))
    after = pixels(page, "#grid canvas")
    assert captions(page, "#grid") == ["Sneaker"] * 20
    assert np.abs(after.astype(int) - before.astype(int)).mean() > 1
    assert_shows(after, reference(cond_model, 7, 20, [sneaker] * 20))


def test_the_latent_walk_goes_from_seed_a_to_seed_b(page, cond_model):
    # the strip: 8 frames on serve.latent's interpolation (here with the first class)
    wanted = reference_latent(cond_model, latent.interpolation(1, 2, 8, NZ), [0] * 8)
    assert_shows(pixels(page, "#walk-strip canvas"), wanted)
    assert_shows(pixels(page, "#walk-frame"), reference_latent(
        cond_model, latent.interpolation(1, 2, 3, NZ)[1:2], [0]))  # the slider starts at 0.5
    page.eval_on_selector("#t", "el => { el.value = '1000'; el.dispatchEvent(new Event('input')) }")
    wait_for(page, "#walk-frame", t="1")
    assert_shows(pixels(page, "#walk-frame"), reference(cond_model, 2, 1, [0]))


def test_the_pages_latent_rule_is_numpys(page):
    """The JavaScript PCG64 + float32 ziggurat against serve.latent.from_seed: bit for bit but
    for the ziggurat's tail, where numpy's value depends on the C library's log1pf (one float32
    ulp, about one value in a million: see the page's comment)."""
    for seed in (0, 1, 7, 2**32, 2**63 - 1, 2**64 - 1):
        got = np.array(page.evaluate(f"Array.from(gan.latentFromSeed('{seed}', 100, {NZ}))"),
                       np.float32)
        want = latent.from_seed(seed, 100, NZ).ravel()
        np.testing.assert_array_max_ulp(got, want, maxulp=1)
        assert (got != want).sum() <= 2, seed


@pytest.mark.parametrize("name", ["g64", "g32_uint8"])  # RGB float NCHW; grey uint8 NHWC
def test_unconditional_models_in_both_layouts(browser, tmp_path_factory, name):
    model = export_generator(tmp_path_factory.mktemp("page"), name, lively=True)
    server = HttpServe(model)
    try:
        p = open_page(browser, server.url + "?model=dcgan&seed=3")
        assert p.get_attribute("#class-label", "hidden") is not None  # no class picker
        grid = pixels(p, "#grid canvas")
        assert_shows(grid, reference(model, 3, len(grid), None))
        assert p.errors == []
        p.close()
    finally:
        server.stop()
