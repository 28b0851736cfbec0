import subprocess
import sys


def test_import_mmat_pulls_no_heavy_backend() -> None:
    code = (
        "import sys, mmat, mmat.schema, mmat.wire, mmat.config, mmat.registry, mmat.cli, mmat.export.release\n"
        "heavy = [m for m in ('torch', 'onnxruntime', 'ray', 'transformers', 'numpy') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
