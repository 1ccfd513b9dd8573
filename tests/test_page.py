"""The web page in headless Chromium: typing a prompt shows the checkpoint ``POST /select`` names, a shared
``/?prompt=`` link answers on load, the key is asked for, and a phone-width screen does not scroll sideways.

Set ``DIFFAGENT_PAGE_SCREENSHOT=docs/page.png`` to also write the desktop screenshot there.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from _servers import a1111_handler, a1111_state_for
from _servers import serve as serve_handler
from conftest import copy_catalog
from diffagent.catalog import Store
from diffagent.schema import APICall
from diffagent.service import ReadOnlyStore, ServiceConfig, create_app
from live_server import serve, service_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.skipif(
        not (CHROMIUM and DRIVER),
        reason="headless Chromium is absent (apt-get install -y chromium chromium-driver; .ci/run does it)",
    ),
    pytest.mark.usefixtures("shared_agent_cache"),
]

PROMPT = "a castle on a cliff at sunset, fantasy landscape, dramatic clouds, highly detailed"


@pytest.fixture(scope="module")
def catalog_file(dump_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_catalog(dump_catalog, tmp_path_factory.mktemp("page"))


@pytest.fixture(scope="module")
def site(catalog_file: Path) -> Iterator[str]:
    app = create_app(ReadOnlyStore(catalog_file), ServiceConfig(agent="default", rate_per_s=0))
    with serve(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # type: ignore[assignment]
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--lang=en-US",
    ):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,1700")
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: webdriver.Chrome, seconds: float = 60) -> WebDriverWait:
    return WebDriverWait(driver, seconds)


def _answer_shown(driver: webdriver.Chrome) -> str:
    _wait(driver).until(lambda d: d.find_element(By.ID, "ckpt-name").text.strip())
    return driver.find_element(By.ID, "ckpt-name").text


def _screenshot(driver: webdriver.Chrome, path: Path) -> None:
    driver.execute_script("window.scrollTo(0, 0)")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.execute_script("return window.innerWidth")
    driver.set_window_size(max(width, 360), min(max(height, 800), 4000))
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000


def test_typing_a_prompt_shows_the_checkpoint_of_post_select(
    site: str, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    expected = httpx.post(f"{site}/select", json={"prompt": PROMPT}, timeout=120).json()["api"]
    browser.get(site + "/")
    _wait(browser).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "#base-models input[type=checkbox]"))
    )
    box = browser.find_element(By.ID, "prompt")
    assert browser.switch_to.active_element == box  # focused on load: type at once
    box.send_keys(PROMPT)
    box.send_keys(Keys.ENTER)  # the keyboard alone asks
    assert _answer_shown(browser) == expected["checkpoint"]["name"]
    link = browser.find_element(By.ID, "ckpt-link").get_attribute("href")
    ckpt = expected["checkpoint"]
    assert link == f"https://civitai.com/models/{ckpt['model_id']}?modelVersionId={ckpt['version_id']}"
    assert browser.find_element(By.ID, "ckpt-base").text == ckpt["base_model"]
    assert browser.find_element(By.ID, "sent-prompt").text == expected["prompt"]
    settings = browser.find_element(By.ID, "settings").text
    assert expected["sampler"] in settings and str(expected["steps"]) in settings
    alternatives = browser.find_elements(By.CSS_SELECTOR, "#alternatives > li")
    assert len(alternatives) >= 1 and alternatives[0].text.startswith(ckpt["name"])
    assert browser.find_elements(By.CSS_SELECTOR, "#evidence figure")
    assert "prompt=" in browser.current_url  # shareable
    _screenshot(browser, tmp_path / "page.png")
    if os.environ.get("DIFFAGENT_PAGE_SCREENSHOT"):
        _screenshot(browser, Path(os.environ["DIFFAGENT_PAGE_SCREENSHOT"]))


def test_a_shared_link_answers_on_load_and_copies_a_payload(site: str, browser: webdriver.Chrome) -> None:
    expected = httpx.post(f"{site}/select", json={"prompt": "anime girl, blue hair"}, timeout=120).json()
    browser.get(f"{site}/?prompt={quote('anime girl, blue hair')}")
    assert _answer_shown(browser) == expected["api"]["checkpoint"]["name"]
    assert browser.find_element(By.ID, "prompt").get_attribute("value") == "anime girl, blue hair"
    browser.find_element(By.CSS_SELECTOR, "#copy-row button[data-format=a1111]").click()
    _wait(browser).until(lambda d: "copied" in d.find_element(By.ID, "copy-status").text)
    assert browser.find_element(By.ID, "generate").is_displayed() is False  # no backend configured


def test_filters_are_sent_and_errors_shown(site: str, browser: webdriver.Chrome) -> None:
    browser.get(site + "/")
    chip = _wait(browser).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "#base-models input[value='SD 2.1 768']"))
    )
    chip.click()
    box = browser.find_element(By.ID, "prompt")
    box.send_keys("a portrait photo of an old fisherman", Keys.ENTER)
    _answer_shown(browser)
    assert browser.find_element(By.ID, "ckpt-base").text == "SD 2.1 768"
    box.clear()
    box.send_keys(" ", Keys.ENTER)
    error = _wait(browser).until(ec.visibility_of_element_located((By.ID, "error")))
    assert "prompt" in error.text.lower()


def test_phone_width_does_not_scroll_sideways(site: str, browser: webdriver.Chrome, tmp_path: Path) -> None:
    browser.set_window_size(390, 900)
    try:
        browser.get(f"{site}/?prompt={quote(PROMPT)}")
        _answer_shown(browser)
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        _screenshot(browser, tmp_path / "page-phone.png")
    finally:
        browser.set_window_size(1280, 1700)


def test_the_page_asks_for_the_key(catalog_file: Path, browser: webdriver.Chrome) -> None:
    config = ServiceConfig(agent="tfidf", rate_per_s=0, api_key="page-key")
    with serve(create_app(ReadOnlyStore(catalog_file), config)) as url:
        browser.get(url + "/")
        key = _wait(browser).until(ec.visibility_of_element_located((By.ID, "key")))
        key.send_keys("page-key", Keys.ENTER)
        _wait(browser).until(ec.presence_of_element_located((By.CSS_SELECTOR, "#base-models input")))
        assert browser.execute_script("return sessionStorage.getItem('diffagent.apiKey')") == "page-key"
        box = browser.find_element(By.ID, "prompt")
        box.send_keys("a red sports car", Keys.ENTER)
        assert _answer_shown(browser)
        browser.execute_script("sessionStorage.clear()")


def test_the_vae_a_checkpoint_is_published_with_is_shown(
    site: str, catalog_file: Path, browser: webdriver.Chrome
) -> None:
    with Store(catalog_file) as store:  # prompts of the sample images of versions published with a VAE
        prompts = [
            prompt
            for (prompt,) in store.conn.execute(
                "SELECT i.prompt FROM images i JOIN files f ON f.version_id = i.version_id"
                " WHERE f.type = 'VAE' AND i.nsfw = 'None' AND length(i.prompt) BETWEEN 20 AND 300"
                " GROUP BY i.prompt ORDER BY min(i.id) LIMIT 12"
            )
        ]
    found = None
    for prompt in prompts:
        api = httpx.post(f"{site}/select", json={"prompt": prompt}, timeout=120).json()["api"]
        if "vae" in api:
            found = prompt, api
            break
    assert found, f"none of {len(prompts)} prompts is answered with a checkpoint published with a VAE"
    prompt, api = found
    browser.get(f"{site}/?prompt={quote(prompt)}")
    _answer_shown(browser)
    assert f"VAE\n{api['vae']['name']}" in browser.find_element(By.ID, "settings").text


def test_the_generate_button_shows_the_image_of_post_generate(
    catalog_file: Path, browser: webdriver.Chrome
) -> None:
    prompt = "a red sports car on a coastal road"
    # the answer first, so that the loopback A1111 holds its checkpoint
    with serve(service_app(catalog_file)) as url:
        answer = httpx.post(f"{url}/select", json={"prompt": prompt}, timeout=120).json()
    with Store(catalog_file) as store:
        state = a1111_state_for(store, APICall.model_validate(answer["api"]))
    with (
        serve_handler(a1111_handler(state)) as generator,
        serve(service_app(catalog_file, generate_backend="a1111", generator_url=generator)) as url,
    ):
        browser.get(f"{url}/?prompt={quote(prompt)}")
        _answer_shown(browser)
        button = browser.find_element(By.ID, "generate")
        assert button.is_displayed() and "a1111" in button.text
        button.click()
        image = _wait(browser).until(ec.presence_of_element_located((By.CSS_SELECTOR, "#generated img")))
        assert image.get_attribute("src").startswith("data:image/png;base64,")
    assert state["requests"][0]["prompt"].startswith(prompt)
