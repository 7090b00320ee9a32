"""The project's own consistency: the package is exactly what the notebooks export, exported names
do not collide, the notebooks are committed executed, the pins agree, and CI runs the README's
test command."""
import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# ---------------------------------------------------------------- export in step

def _nbdev_export_command():
    exe = Path(sys.executable).with_name("nbdev-export")
    found = str(exe) if exe.exists() else shutil.which("nbdev-export")
    if found is None:
        pytest.fail("nbdev-export is not installed: pip install -r requirements.txt")
    return found


def _tree(root: Path):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


def test_nbdev_export_leaves_the_package_unchanged(repo, tmp_path):
    "Export the committed notebooks into a copy of the repo: xlref/ must come out byte for byte the same."
    work = tmp_path / "repo"
    work.mkdir()
    shutil.copy(repo / "pyproject.toml", work / "pyproject.toml")
    shutil.copytree(repo / "notebooks", work / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    shutil.copytree(repo / "xlref", work / "xlref", ignore=shutil.ignore_patterns("__pycache__"))
    before = {**_tree(work / "xlref"), "pyproject.toml": (work / "pyproject.toml").read_bytes()}
    result = subprocess.run([_nbdev_export_command()], cwd=work, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    after = {**_tree(work / "xlref"), "pyproject.toml": (work / "pyproject.toml").read_bytes()}
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"nbdev-export would change {changed}: run `nbdev-export` and commit, or fix the notebook"


# ---------------------------------------------------------------- exported names

def _is_patch(decorator) -> bool:
    "Whether a decorator is patch_to(...) (nbdev likewise leaves patch* functions out of __all__)."
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return isinstance(target, ast.Name) and target.id.startswith("patch")


def exported_names(source: str):
    "(names in `__all__`, top-level definitions in order) of a module's source."
    tree = ast.parse(source)
    all_names, defined = [], []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if any(_is_patch(d) for d in node.decorator_list):
                continue                                # a method added to a class (xlref.base.patch_to)
            defined.append(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id == "__all__":
                    all_names = list(ast.literal_eval(node.value))
    return all_names, defined


def name_collisions(modules: dict):
    "Problems in {module name: source}: a name exported by two modules, or defined twice in one."
    problems, owner = [], {}
    for mod, source in sorted(modules.items()):
        all_names, defined = exported_names(source)
        for name in sorted({n for n in defined if defined.count(n) > 1}):
            problems.append(f"{name} is defined {defined.count(name)} times in {mod}")
        for name in all_names:
            if name in owner:
                problems.append(f"{name} is exported by both {owner[name]} and {mod}")
            owner.setdefault(name, mod)
    return problems


def test_the_collision_check_catches_collisions():
    assert name_collisions({"a": "__all__ = ['f']\ndef f(): pass", "b": "__all__ = ['f']\ndef f(): pass"}) == [
        "f is exported by both a and b"]
    assert name_collisions({"a": "__all__ = ['g']\ndef g(): pass\ndef g(): pass"}) == ["g is defined 2 times in a"]
    assert name_collisions({"a": "__all__ = ['f']\ndef f(): pass", "b": "__all__ = ['g']\ndef g(): pass"}) == []
    patched = "@patch_to(A)\ndef save(self): pass\n@patch_to(B)\ndef save(self): pass"
    assert name_collisions({"a": patched}) == []                 # methods of two classes, not module definitions
    assert name_collisions({"a": patched + "\ndef save(): pass\ndef save(): pass"}) == ["save is defined 2 times in a"]


def test_no_two_exported_definitions_share_a_name(repo):
    modules = {p.stem: p.read_text() for p in sorted((repo / "xlref").glob("*.py")) if not p.name.startswith("_")}
    assert "positions" in modules
    assert name_collisions(modules) == []


# ---------------------------------------------------------------- notebooks

def notebooks(repo):
    found = sorted((repo / "notebooks").glob("[0-9][0-9]*_*.ipynb"))
    assert found, "no notebooks found"
    return found


def test_notebooks_are_committed_executed_top_to_bottom(repo):
    for path in notebooks(repo):
        nb = json.loads(path.read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
        counts = [c.get("execution_count") for c in code]
        assert None not in counts, f"{path.name}: some code cells were never run"
        assert counts == list(range(1, len(code) + 1)), f"{path.name}: not run once, top to bottom ({counts})"
        assert nb["metadata"]["kernelspec"]["name"] == "python3", f"{path.name}: kernel must be python3"


def test_every_notebook_ends_by_checking_the_installed_package(repo):
    for path in notebooks(repo):
        code = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
        last = "".join(code[-1]["source"])
        assert re.search(r"^\s*import xlref", last, re.M) and "assert" in last, (
            f"{path.name}: the last code cell must import xlref and assert that it reproduces the notebook")


def test_no_notebook_is_left_out_of_the_course(repo):
    "Every notebook in notebooks/ is numbered, so nbdev exports it in order and the checks here see it."
    stray = [p.name for p in (repo / "notebooks").glob("*.ipynb") if p not in notebooks(repo)]
    assert stray == [], f"notebooks outside the numbered course: {stray}"


def test_notebooks_do_not_use_absolute_paths(repo):
    for path in notebooks(repo):
        for cell in json.loads(path.read_text())["cells"]:
            src = "".join(cell["source"])
            assert "/work/" not in src and "/root/" not in src, f"{path.name}: machine-specific path in a cell"


# ---------------------------------------------------------------- pins, README and CI

def pins(lines):
    found = {}
    for line in lines:
        line = line.split("#")[0].strip().lstrip("-").strip()
        if line and not line.endswith(":") and re.match(r"^[A-Za-z0-9_.\-\[\]]+\s*[=<>!~]", line):
            m = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*==\s*([^\s;]+)$", line)
            assert m, f"not pinned with ==: {line!r}"
            found[m.group(1).lower().replace("_", "-")] = m.group(3)
    return found


def test_requirements_and_environment_pin_the_same_versions(repo):
    req = pins((repo / "requirements.txt").read_text().splitlines())
    env_text = (repo / "environment.yml").read_text()
    pip_section = env_text.split("- pip:", 1)[1].splitlines()
    env = pins(pip_section)
    assert req["torch"] == "2.13.0"
    assert "transformers" in req and req["transformers"] == "4.35.0"
    assert req == env
    assert re.search(r"^\s*-\s*python=3\.11\s*$", env_text, re.M)


def readme_commands(repo):
    "The shell commands in the README's fenced bash blocks, one per line."
    text = (repo / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_readme_opens_with_the_two_commands(repo):
    commands = readme_commands(repo)
    read_along, test = commands[0], commands[1]
    assert "requirements.txt" in read_along and "jupyter lab notebooks/00_index.ipynb" in read_along
    assert "requirements.txt" in test and test.endswith("pytest")


def test_ci_runs_the_readme_test_command(repo):
    test_command = readme_commands(repo)[1]
    ci = (repo / ".ci" / "run").read_text().splitlines()
    assert test_command in [line.strip() for line in ci], ".ci/run must run the README's test command verbatim"


def test_pytest_runs_the_notebooks_too(repo):
    text = (repo / "pyproject.toml").read_text()
    assert re.search(r'addopts = ".*--nbval', text) and '"notebooks"' in text


def test_public_api_is_importable_from_the_package():
    import xlref
    built = ["TransfoXLConfig", "TransfoXLModel", "TransfoXLLMHeadModel", "TransfoXLForSequenceClassification",
             "TransfoXLTokenizer", "AdaptiveEmbedding", "ProjectedAdaptiveLogSoftmax", "XLNetTokenizer", "XLNetConfig",
             "XLNetModel", "XLNetLMHeadModel", "XLNetForSequenceClassification", "XLNetForMultipleChoice",
             "XLNetForTokenClassification", "XLNetForQuestionAnsweringSimple", "XLNetForQuestionAnswering"]
    for name in built:
        assert name in xlref.__all__ and getattr(xlref, name).__module__.startswith("xlref."), name
    assert all(hasattr(xlref, name) for name in xlref.__all__)
    assert re.fullmatch(r"\d+\.\d+\.\d+", xlref.__version__)


def test_readme_defect_table_names_tests_that_exist(repo):
    "Every test the README's defect table cites exists (a renamed test must not leave a dangling citation)."
    readme = (repo / "README.md").read_text()
    table = readme.split("## Defects of the references, pinned")[1].split("\n## ")[0]
    cited, current = [], None
    for cell in re.findall(r"`([^`]*::[^`]*)`", table):
        path, name = cell.split("::")
        current = path or current
        cited.append((current, name))
    assert len(cited) >= 10
    for path, name in cited:
        source = (repo / "tests" / path).read_text()
        assert re.search(rf"^def {re.escape(name)}\(", source, re.M), f"README cites {path}::{name}, which does not exist"


# ---------------------------------------------------------------- nothing outside the repository

def _tracked_files(repo):
    "The files a clone has: git's list when this is a git checkout, else every file under the repo."
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=repo, capture_output=True, check=True, timeout=60).stdout
        files = [repo / name for name in out.decode().split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        files = [p for p in repo.rglob("*") if ".git" not in p.parts]
    return [f for f in files if f.is_file() and "__pycache__" not in f.parts]


def test_nothing_refers_to_a_folder_beside_the_repository(repo):
    "A user's clone has nothing beside it: no file may point at the development machines' shared folder."
    beside = ".." + "/shared"                           # spelled in two parts so this file does not match itself
    patterns = [beside, "shared" + "/data", "shared" + "/reference"]
    hits = []
    for f in _tracked_files(repo):
        text = f.read_bytes().decode("utf-8", errors="replace")
        hits += [f"{f.relative_to(repo)}: {p}" for p in patterns if p in text]
    assert hits == [], f"files that refer outside the repository: {hits}"


@pytest.mark.slow
def test_a_wheel_carries_the_corpora_and_their_licences(repo, tmp_path):
    "pip install (not only an editable install) must carry the shipped corpora, each with its README, and the checkpoints."
    build = tmp_path / "src"
    shutil.copytree(repo, build, ignore=shutil.ignore_patterns(".git", "*.egg-info", "__pycache__", "build", "dist"))
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path / "dist"), str(build)]
    try:                                                # build offline with the installed backend when it is recent enough
        import setuptools
        if int(setuptools.__version__.split(".")[0]) >= 77:
            cmd.insert(4, "--no-build-isolation")
    except ImportError:
        pass
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    import zipfile
    from xlref.datasets import CORPORA, file_digest
    (wheel,) = (tmp_path / "dist").glob("xlref-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for corpus in CORPORA.values():
            member = f"xlref/corpora/{corpus.file}"
            assert (member in names) == corpus.shipped, member
            if corpus.shipped:
                assert file_digest(zf.read(member), corpus.digest[0]) == corpus.digest[1]
                assert f"xlref/corpora/{corpus.file.split('/')[0]}/README.md" in names
        shipped = [p for p in (repo / "xlref" / "checkpoints").rglob("*") if p.is_file()]
        assert shipped, "no shipped checkpoint files found"
        for path in shipped:
            assert path.relative_to(repo).as_posix() in names, f"the wheel lacks {path.relative_to(repo)}"


def test_every_notebook_links_to_its_neighbours_and_the_map(repo):
    "Reading order is the file order: each notebook links back to the one before, on to the one after, and to 00."
    found = notebooks(repo)
    for k, path in enumerate(found):
        text = "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "markdown")
        links = set(re.findall(r"\]\(([0-9][0-9]\w*_\w+\.ipynb)\)", text))
        if k > 0:
            assert found[k - 1].name in links, f"{path.name} does not link back to {found[k - 1].name}"
            assert "00_index.ipynb" in links, f"{path.name} does not link to the map"
        if k + 1 < len(found):
            assert found[k + 1].name in links, f"{path.name} does not link on to {found[k + 1].name}"


# ---------------------------------------------------------------- reading order is dependency order

def _code(path):
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def exported_modules(cells):
    "The modules a notebook's code cells export to: its default_exp and the targets of `#| export NAME`."
    found = set()
    for src in cells:
        found.update(re.findall(r"^#\|\s*default_exp\s+(\S+)", src, re.M))
        found.update(re.findall(r"^#\|\s*export\s+(\w+)\s*$", src, re.M))
    return found


def used_modules(cells, package_names):
    """The xlref modules a notebook's code uses: `from xlref.m import`, `import xlref.m`, `xlref.m.attr`, and
    `from xlref import name` (a submodule, or a public name mapped to the module that defines it by
    `package_names`). The package's own `__init__` export cell (notebook 00) only lists the API: skipped."""
    def module_of(name):          # a submodule, a public name of the package, or the package's own dunder
        return package_names.get(name, "__init__" if name.startswith("__") else name)

    used = set()
    for src in cells:
        if src.startswith("#| export") and "__all__ = [" in src and "__version__ =" in src:
            continue
        used.update(re.findall(r"^\s*from\s+xlref\.(\w+)\s+import\b", src, re.M))
        used.update(re.findall(r"^\s*import\s+xlref\.(\w+)", src, re.M))
        used.update(module_of(name) for name in re.findall(r"\bxlref\.(\w+)\.\w", src))
        for names in re.findall(r"^[ \t]*from[ \t]+xlref[ \t]+import[ \t]+(\([^)]*\)|[^\n#]+)", src, re.M):
            used.update(module_of(n.strip()) for n in names.strip("()").split(",") if n.strip())
    return used


def order_violations(course, package_names):
    "course: [(notebook name, code cells)] in reading order -> 'nb uses m, first built by later' problems."
    first = {}
    for k, (_, cells) in enumerate(course):
        for mod in exported_modules(cells):
            first.setdefault(mod, k)
    problems = []
    for k, (name, cells) in enumerate(course):
        for mod in sorted(used_modules(cells, package_names)):
            if mod not in first:
                problems.append(f"{name} uses xlref.{mod}, which no notebook exports")
            elif first[mod] > k:
                problems.append(f"{name} uses xlref.{mod}, which {course[first[mod]][0]} builds later")
    return problems


def _package_names():
    import xlref
    return {name: getattr(xlref, name).__module__.split(".")[-1] for name in xlref.__all__}


def test_the_order_check_catches_a_notebook_that_uses_a_later_one():
    a = ["#| default_exp first\n#| export\ndef f(): pass"]
    b = ["#| default_exp second\nfrom xlref.first import f"]
    assert order_violations([("01_a", a), ("02_b", b)], {}) == []
    assert order_violations([("01_b", b), ("02_a", a)], {}) == ["01_b uses xlref.first, which 02_a builds later"]
    c = ["import xlref.second as S\nxlref.first.f()"]
    assert order_violations([("01_c", c), ("02_a", a), ("03_b", b)], {}) == [
        "01_c uses xlref.first, which 02_a builds later", "01_c uses xlref.second, which 03_b builds later"]
    d = ["from xlref import Thing, __version__", "xlref.Other.method()"]
    assert order_violations([("01_d", d), ("02_a", a)], {"Thing": "first", "Other": "first"}) == [
        "01_d uses xlref.__init__, which no notebook exports", "01_d uses xlref.first, which 02_a builds later"]
    assert order_violations([("01_e", ["from xlref.nowhere import x"])], {}) == [
        "01_e uses xlref.nowhere, which no notebook exports"]


def test_every_notebook_uses_only_what_earlier_notebooks_built(repo):
    "Reading order is dependency order: no notebook imports a module that a later notebook defines."
    course = [(path.name, _code(path)) for path in notebooks(repo)]
    assert len(course) >= 15
    assert order_violations(course, _package_names()) == []
