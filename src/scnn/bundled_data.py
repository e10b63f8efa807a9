"""Reference data shipped inside the package, named so commands can refer to it.

``--classes thumos14`` is the THUMOS14 class table (``index,name,thumos14_id``: the 1..20
index of the S-CNN authors' fc8 and the official kit's class id); ``--prior-from thumos14-val``
is the THUMOS14 validation ground truth, from which the authors computed the window-length
prior. Anything else given to such an option is a path.
"""

from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"
THUMOS14_DIR = DATA_DIR / "thumos14"

CLASS_TABLES = {"thumos14": THUMOS14_DIR / "classes.csv"}
GROUND_TRUTHS = {"thumos14-val": THUMOS14_DIR / "annotations" / "val"}


def resolve_class_table(name_or_path: str | Path) -> Path:
    """A bundled class table by name (``thumos14``), else the path as given."""
    return CLASS_TABLES.get(str(name_or_path), Path(name_or_path))


def resolve_ground_truth(name_or_path: str | Path) -> Path:
    """Bundled ground truth by name (``thumos14-val``), else the path as given."""
    return GROUND_TRUTHS.get(str(name_or_path), Path(name_or_path))
