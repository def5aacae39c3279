"""`make demo` and the CLI's `--save` print no libpng warning: they read photos with C-level stderr silenced."""

import subprocess
import sys

from sample_images import SAMPLES

READ = "import cv2, sys; from client.annotate import native_stderr_silenced\n"
WARNING = b"libpng warning: iCCP: known incorrect sRGB profile"


def read_astronaut(silenced: bool) -> subprocess.CompletedProcess:
    """Read astronaut.png with OpenCV in a fresh process (libpng warns once per process)."""
    call = f"cv2.imread({str(SAMPLES / 'astronaut.png')!r})"
    body = f"with native_stderr_silenced():\n    {call}\n" if silenced else f"{call}\n"
    code = READ + body + "print('done', file=sys.stderr)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)


def test_opencv_warns_about_the_photo_unless_silenced():
    assert WARNING in read_astronaut(silenced=False).stderr  # the warning the demo hides is real
    quiet = read_astronaut(silenced=True).stderr
    assert WARNING not in quiet
    assert quiet.strip() == b"done"  # and stderr works again after the block
