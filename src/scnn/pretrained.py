"""Starting weights for training (``init_from``), told apart by what the file or folder is.

- an scnn model directory (a folder with ``model.json``): all but fc8 of its proposal network
  (for the proposal stage) or of its localization network (for the classification stage),
  which must have been built with the same network options;
- a C3D-v1.0 Caffe model, e.g. the authors' Sports-1M C3D (scnn.caffe): conv1a … fc7-1;
- else a ``torch.save``-d state dict, the PyTorch port of the Sports-1M C3D: conv1 … fc7.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from scnn.caffe import is_caffe_model, load_caffe_weights
from scnn.errors import ScnnError
from scnn.model import C3D, ModelOptions, copy_pretrained, load_sports1m_weights
from scnn.modelfile import MODEL_JSON, load_model


def load_pretrained(
    model: C3D, init_from: str | Path, *, binary: bool, options: ModelOptions
) -> None:
    """Copy the starting weights of ``init_from`` into ``model`` (every layer but fc8).
    ``binary``: the network being trained is the proposal network; ``options``: its own."""
    path = Path(init_from)
    if (path / MODEL_JSON).is_file():
        source = load_model(path)
        if replace(source.options, dropout=options.dropout) != options:
            raise ScnnError(
                f"the model was built with {source.options}, the config asks for {options}",
                path,
            )
        network = source.proposal if binary else source.localization
        keys = [key for key in model.state_dict() if not key.startswith("fc8.")]
        copy_pretrained(model, network.state_dict(), keys, path)
    elif is_caffe_model(path):
        load_caffe_weights(model, path, fc8=False)
    else:
        load_sports1m_weights(model, path)
