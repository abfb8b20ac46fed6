"""Packaging and documentation: one version, a short README, an API page for every public
model and module, and a wheel that works without the repository.

The wheel check builds the sdist and the wheel, installs the wheel in a fresh virtualenv
outside the repository and runs the README's quick start there. It takes minutes and
downloads TensorFlow into the new environment (pip's cache serves later runs), so it runs
when `TFSSL_PACKAGE_CHECK=1` is set: `make package-check`, which CI runs.
"""

import glob
import importlib.util
import os
import re
import subprocess
import sys

import pytest

import tfssl

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README_MAX_LINES = 150


def read(relative_path):
    with open(os.path.join(REPOSITORY, relative_path), encoding="utf-8") as f:
        return f.read()


def readme_quick_start():
    """The README's quick start, the first Python block after its heading."""
    match = re.search(r"## Quick start\n.*?```python\n(.*?)```", read("README.md"), re.S)
    return match.group(1)


def api_pages():
    """The API pages that `make docs` generates: `(models, modules)` of the generator."""
    path = os.path.join(REPOSITORY, "docs", "_ext", "gen_api_pages.py")
    spec = importlib.util.spec_from_file_location("gen_api_pages", path)
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    return generator.api_pages()


def test_the_version_is_defined_once_in_the_package():
    assert re.fullmatch(r"\d+\.\d+\.\d+", tfssl.__version__)
    setup_cfg = read("setup.cfg")
    assert re.search(r"^version = attr: tfssl.__version__$", setup_cfg, re.M)
    assert "version" not in read("pyproject.toml")


def test_the_changelog_has_the_version():
    assert f"## [{tfssl.__version__}]" in read("CHANGELOG.md")


def test_the_license_is_the_apache_license():
    license_text = read("LICENSE")
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert "END OF TERMS AND CONDITIONS" in license_text
    assert re.search(r"^license = Apache-2.0$", read("setup.cfg"), re.M)


def test_the_readme_is_short_and_its_links_exist():
    readme = read("README.md")
    assert len(readme.splitlines()) <= README_MAX_LINES
    links = re.findall(r"\]\(([^)#]+)\)", readme)
    assert links
    missing = [link for link in links if not os.path.exists(os.path.join(REPOSITORY, link))]
    assert not missing


def test_every_public_model_has_an_api_page():
    models, _ = api_pages()
    assert sorted(title for title, _, _ in models) == sorted(tfssl.models.__all__)
    for title, path, text in models:
        assert path == f"api/models/{title}.md"
        assert f"::: tfssl.models.{title}\n" in text


def test_every_public_module_has_an_api_page():
    _, modules = api_pages()
    documented = {title for title, _, _ in modules}
    expected = {f"tfssl.{name}" for name in tfssl.__all__ if name != "models"}
    assert documented == expected | {"tfssl.testing"}
    pages = dict((title, text) for title, _, text in modules)
    assert "::: tfssl.losses\n" in pages["tfssl.losses"]
    # The function shadows its module in the package: its page renders the function.
    assert "::: tfssl.self_training.self_training\n" in pages["tfssl.self_training"]


def test_every_written_docs_page_is_in_the_navigation():
    nav = read("mkdocs.yml").split("\nnav:\n")[1]
    listed = set(re.findall(r":\s+([\w/.-]+\.md)$", nav, re.M))
    # The API section's navigation is generated with its pages.
    assert re.search(r"^  - API reference: api/$", nav, re.M)
    pages = {
        os.path.relpath(path, os.path.join(REPOSITORY, "docs"))
        for path in glob.glob(os.path.join(REPOSITORY, "docs", "**", "*.md"), recursive=True)
    }
    assert pages - listed == {"api/index.md"}
    assert listed - pages == set()


@pytest.mark.skipif(
    os.environ.get("TFSSL_PACKAGE_CHECK") != "1",
    reason="builds and installs the wheel in a fresh virtualenv: make package-check",
)
def test_the_wheel_runs_the_quick_start_in_a_fresh_virtualenv(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), REPOSITORY],
        check=True,
        capture_output=True,
    )
    wheels = glob.glob(str(dist / "*.whl"))
    wheel_name = f"tfssl-{tfssl.__version__}-py3-none-any.whl"
    assert [os.path.basename(wheel) for wheel in wheels] == [wheel_name]
    assert len(glob.glob(str(dist / "*.tar.gz"))) == 1
    subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *glob.glob(str(dist / "*"))],
        check=True,
    )

    # A new environment without the repository's venv or its site-packages, and nothing of
    # the repository on the path (on PYTHONPATH, its tfssl.egg-info would tell pip that tfssl
    # is installed already).
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env)
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "--quiet", wheels[0]], check=True, env=env)

    # The quick start as written, from a folder outside the repository: tfssl must come
    # from the installed wheel.
    workdir = tmp_path / "user"
    workdir.mkdir()
    script = workdir / "quick_start.py"
    script.write_text(
        readme_quick_start() + "\nprint('tfssl', tfssl.__version__, tfssl.__file__)\n"
    )
    result = subprocess.run(
        [python, str(script)], cwd=workdir, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    _, version, module_file = result.stdout.strip().splitlines()[-1].split(" ")
    assert version == tfssl.__version__
    assert module_file.startswith(str(venv))
    assert not module_file.startswith(REPOSITORY)
    assert os.path.isfile(workdir / "saved_models" / "quickstart" / "1" / "saved_model.pb")
