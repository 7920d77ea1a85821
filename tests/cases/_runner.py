"""Run one hard case in this interpreter; print a JSON report on the last line.

Usage: python _runner.py CASE_DIR ROOT MODE [PATCH_FILE]
  MODE fresh    setup() then observe() four times
  MODE patched  setup(); observe; apply; observe; revert; observe; apply; observe
  MODE refused  setup(); observe; apply must raise; observe x3
Only the standard library and suture.runtime may be imported here.
"""

import importlib
import json
import sys
import traceback


class Phases(list):
    """Each observation is serialised when taken: later mutation cannot rewrite it."""

    def append(self, value):
        super().append(json.loads(json.dumps(value, default=repr)))


def main() -> int:
    case_dir, root, mode = sys.argv[1:4]
    patch_file = sys.argv[4] if len(sys.argv) > 4 else None
    sys.path.insert(0, root)
    sys.path.insert(0, case_dir)
    report = {"mode": mode, "phases": Phases(), "events": []}
    try:
        driver = importlib.import_module("driver")
        state = driver.setup()
        report["phases"].append(driver.observe(state))
        if mode == "fresh":
            for _ in range(3):
                report["phases"].append(driver.observe(state))
        else:
            from suture import runtime

            with open(patch_file, "rb") as f:
                patch = runtime.load_patch(f.read())
            if mode == "refused":
                try:
                    runtime.apply(patch)
                except runtime.SutureError as exc:
                    report["refused"] = exc.code
                    report["events"].append(str(exc))
                else:
                    report["refused"] = None
                for _ in range(3):
                    report["phases"].append(driver.observe(state))
            else:
                result = runtime.apply(patch)
                report["events"].append(result.to_dict())
                if hasattr(driver, "after_apply"):
                    driver.after_apply(state, runtime)
                report["phases"].append(driver.observe(state))
                report["events"].append(runtime.revert(patch.id).to_dict())
                if hasattr(driver, "after_revert"):
                    driver.after_revert(state, runtime)
                report["phases"].append(driver.observe(state))
                report["events"].append(runtime.apply(patch).to_dict())
                report["phases"].append(driver.observe(state))
                report["status"] = runtime.status()
    except BaseException:
        report["crash"] = traceback.format_exc()
    sys.stdout.flush()
    print("\n" + json.dumps(report, default=repr))
    return 0


if __name__ == "__main__":
    sys.exit(main())
