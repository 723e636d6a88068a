"""`edgefleet image build-base` refuses bad input before it builds or pushes anything."""

from __future__ import annotations

import pytest

from edgefleet.cli import main


def test_an_unknown_architecture_is_refused_with_exit_2(capsys):
    code = main(["image", "build-base", "--registry", "https://127.0.0.1:1", "--arch", "sparc"])
    assert code == 2
    assert "sparc" in capsys.readouterr().err


def test_an_unreadable_password_file_is_refused_with_exit_2(tmp_path, capsys):
    code = main(["image", "build-base", "--registry", "https://127.0.0.1:1",
                 "--password-file", str(tmp_path / "absent")])  # fmt: skip
    assert code == 2
    assert "password" in capsys.readouterr().err


def test_the_registry_is_required():
    with pytest.raises(SystemExit) as exc:
        main(["image", "build-base"])
    assert exc.value.code == 2
