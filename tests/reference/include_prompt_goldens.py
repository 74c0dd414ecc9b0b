#!/usr/bin/env python3
"""Golden values for Pooling's include_prompt false, one file per pooling mode.

For each source fixture in SOURCES (tests/fixtures/<name>) this script
  1. copies the folder into a temporary directory;
  2. sets "include_prompt": false in the copy's Pooling config (the config.json under the path
     modules.json gives the sentence_transformers Pooling module);
  3. writes the copy's config_sentence_transformers.json: the existing one's keys (if any) with
     "prompts" PROMPTS, "default_prompt_name" null and "similarity_fn_name" "cosine";
  4. runs generate_golden_generic.py on the copy with `--cases prompted` (embeddings of three texts,
     "hi" among them, with no prompt, prompt "query" and prompt "document"; attributions of the
     query / document pair at the first and last layer, cos and dot, N = 10);
  5. adds the top-level keys "derived_from" (the source folder's name), "include_prompt" (false),
     "prompts" and "config_sentence_transformers" (the whole file written), and writes
     tests/fixtures/golden/include-prompt/<name>.json.
Nothing else in the copy changes, so a test can rebuild the same folder from those keys.

With include_prompt false sentence-transformers masks out the first prompt_length tokens before
pooling; prompt_length is the token count of the prompt tokenized alone, less a trailing special
token (so BERT's [CLS] counts as a prompt token and cls pooling takes the first token after the
prompt). lasttoken pooling is unchanged by it (the last token is never a prompt token).

Usage (from the repository root):
  HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 target/reference-venv/bin/python tests/reference/include_prompt_goldens.py
  ... include_prompt_goldens.py --only tiny-bert-cls      # one source
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
OUT_DIR = os.path.join(FIXTURES, "golden", "include-prompt")
GENERATOR = os.path.join(HERE, "generate_golden_generic.py")

# source fixture -> its pooling mode (checked against the golden's "pooling")
SOURCES = {
    "tiny-bert-cls": "cls",
    "tiny-roberta": "mean",
    "tiny-mpnet-max": "max",
    "tiny-bert-lasttoken": "lasttoken",
    "tiny-bert-weightedmean": "weightedmean",
}
PROMPTS = {"query": "query: ", "document": "passage: "}
POOLING_TYPE = "sentence_transformers.models.Pooling"


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def pooling_config_path(folder):
    mods = [m for m in read_json(os.path.join(folder, "modules.json")) if m["type"] == POOLING_TYPE]
    assert len(mods) == 1, f"{folder}: expected one Pooling module, got {mods}"
    return os.path.join(folder, mods[0]["path"], "config.json")


def derive(source, folder):
    """The source folder copied to `folder`, with include_prompt false and PROMPTS; returns the
    config_sentence_transformers.json written."""
    shutil.copytree(source, folder)
    pool_path = pooling_config_path(folder)
    pool = read_json(pool_path)
    pool["include_prompt"] = False
    write_json(pool_path, pool)
    st_path = os.path.join(folder, "config_sentence_transformers.json")
    st_cfg = read_json(st_path) if os.path.exists(st_path) else {}
    st_cfg.update({"prompts": dict(PROMPTS), "default_prompt_name": None, "similarity_fn_name": "cosine"})
    write_json(st_path, st_cfg)
    return st_cfg


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", choices=sorted(SOURCES), help="source fixture(s) to do (default: all)")
    ap.add_argument("--python", default=sys.executable, help="interpreter for generate_golden_generic.py")
    args = ap.parse_args()
    os.makedirs(OUT_DIR, exist_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    t_all = time.time()
    for name in args.only or SOURCES:
        t0 = time.time()
        out = os.path.join(OUT_DIR, name + ".json")
        with tempfile.TemporaryDirectory(prefix="include-prompt-") as tmp:
            folder = os.path.join(tmp, name)
            st_cfg = derive(os.path.join(FIXTURES, name), folder)
            subprocess.run([args.python, GENERATOR, "--model-dir", folder, "--name", f"include-prompt/{name}",
                            "--out", out, "--cases", "prompted"], check=True, env=env, cwd=ROOT)
        g = read_json(out)
        assert g["pooling"] == SOURCES[name], (name, g["pooling"])
        assert g["include_prompt"] is False and g["prompts"] == PROMPTS, (g["include_prompt"], g["prompts"])
        # derived_from etc. right after "model"; the generator's own keys keep their order
        extra = {"derived_from": name, "include_prompt": False, "prompts": dict(PROMPTS),
                 "config_sentence_transformers": st_cfg}
        res = {}
        for k, v in g.items():
            if k in extra:
                continue
            res[k] = v
            if k == "model":
                res.update(extra)
        with open(out, "w", encoding="utf-8") as f:
            json.dump(res, f, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
            f.write("\n")
        print(f"== {name} ({SOURCES[name]}): {out} {os.path.getsize(out)} bytes, {len(res['embeddings'])} "
              f"embeddings, {len(res['attributions'])} attributions, {time.time() - t0:.1f} s", flush=True)
    print(f"all done in {time.time() - t_all:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
