"""The package's public names: the documented objects whatever was imported first, a light top-level import, one error base.

Import order only matters in a fresh interpreter (a test process has imported everything already),
so each order runs in its own ``python -c``.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys

import pytest

import xm_integrations
import xm_integrations.errors as errors

#: What each public name must be, by kind: checked in every import order below.
_CHECK_KINDS = """
import inspect, types, xm_integrations as x
for name in x.__all__:
    value = getattr(x, name)
    assert not isinstance(value, types.ModuleType), f"{name} is the module {value.__name__}"
    if name[0].isupper() and not name.isupper():
        assert inspect.isclass(value), (name, value)
    elif name.islower():
        assert inspect.isfunction(value), (name, value)
"""

IMPORT_ORDERS = [
    "from xm_integrations import ColBERTXM, maxsim",
    "from xm_integrations import XMColBERTReranker, maxsim_pairwise",
    "from xm_integrations import PackedTokens, maxsim",
    "from xm_integrations import *",
    "import xm_integrations.models.colbert_xm.model; from xm_integrations import maxsim",
    "import xm_integrations.scoring.late_interaction; from xm_integrations import maxsim",
    "from xm_integrations import MonoXM, XMFlagReranker, detect_language, compile_xmod_layers",
    "from xm_integrations import maxsim",
]


@pytest.mark.parametrize("statement", IMPORT_ORDERS)
def test_public_names_are_the_documented_objects_in_any_import_order(statement: str) -> None:
    code = f"{statement}\nfrom xm_integrations import maxsim as m\nassert inspect.isfunction(m), m\n"
    result = subprocess.run([sys.executable, "-c", "import inspect\n" + code + _CHECK_KINDS],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_no_submodule_shares_a_name_with_what_its_package_exports() -> None:
    """The root cause: importing ``pkg.name`` sets the attribute ``pkg.name`` to the module."""
    for info in pkgutil.walk_packages(xm_integrations.__path__, "xm_integrations."):
        parent, _, name = info.name.rpartition(".")
        package = importlib.import_module(parent)
        exported = set(getattr(package, "__all__", ()))
        assert name not in exported, f"{info.name} is a submodule and {parent} exports {name!r}"


def test_package_import_is_light() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import sys, xm_integrations; heavy = [m for m in ('torch', 'transformers', "
         "'sentence_transformers', 'numpy', 'FlagEmbedding') if m in sys.modules]; assert not heavy, heavy"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_every_package_exception_derives_from_the_base() -> None:
    classes = [value for value in vars(errors).values() if inspect.isclass(value) and issubclass(value, Exception)]
    assert len(classes) >= 12
    for cls in classes:
        assert issubclass(cls, errors.XMIntegrationsError), cls
    assert issubclass(errors.UnknownLanguageError, ValueError)
    assert issubclass(errors.MissingCheckpointFileError, FileNotFoundError)
    assert issubclass(errors.ValidationError, RuntimeError)
    # Every module that defines an exception re-exports the one from errors, never a copy.
    from xm_integrations import languages
    from xm_integrations.cli import _common
    from xm_integrations.hub import model_folder, upload, validate
    from xm_integrations.languages import routing

    assert languages.UnknownLanguageError is errors.UnknownLanguageError
    assert routing.MissingLanguageError is errors.MissingLanguageError
    assert _common.InputError is errors.InputError
    assert (model_folder.ModelFolderError, validate.ValidationError, upload.UploadError) == (
        errors.ModelFolderError, errors.ValidationError, errors.UploadError)


def test_no_module_defines_its_own_exception_class() -> None:
    for info in pkgutil.walk_packages(xm_integrations.__path__, "xm_integrations."):
        if info.name == "xm_integrations.errors" or info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        own = [name for name, value in vars(module).items()
               if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == module.__name__]
        assert not own, f"{info.name} defines {own}: exceptions live in xm_integrations.errors"



def test_every_raise_in_the_package_names_a_package_error() -> None:
    """``raise X(...)`` anywhere in the package: X derives from XMIntegrationsError (re-raises are fine)."""
    import ast

    offenders = []
    for info in pkgutil.walk_packages(xm_integrations.__path__, "xm_integrations."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        tree = ast.parse(inspect.getsource(module))
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and isinstance(node.exc.func, ast.Name):
                cls = vars(module).get(node.exc.func.id) or getattr(errors, node.exc.func.id, None)  # or a local import
                if not (inspect.isclass(cls) and issubclass(cls, errors.XMIntegrationsError)):
                    offenders.append(f"{info.name}:{node.lineno} raises {node.exc.func.id}")
    assert not offenders, offenders
