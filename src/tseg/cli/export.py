"""``tseg export onnx | hf`` and ``tseg serve``: a trained model for deployment."""

from __future__ import annotations

import argparse
import shlex

from .args import Subparsers, out_path


def cmd_export(ns: argparse.Namespace) -> int:
    from ..export.onnx_export import export_onnx

    meta = export_onnx(ns.checkpoint, ns.out, check=not ns.no_check, precision=ns.precision)
    what = "int8 ONNX graphs" if ns.precision == "int8" else "ONNX graphs"
    print(f"wrote the {what}, tokenizer and tseg_onnx.json to {ns.out}")
    if "export_check" in meta:
        c = meta["export_check"]
        if ns.precision == "int8":
            print(
                f"ONNX Runtime int8 vs torch, mean cosine of the embeddings: image "
                f"{c['image_mean_cosine']:.5f}, text {c['text_mean_cosine']:.5f}; max "
                f"|difference|: {c['image_max_abs_diff']:.1e}, {c['text_max_abs_diff']:.1e}"
            )
        else:
            print(
                f"ONNX Runtime vs torch, max |difference|: image embeddings "
                f"{c['image_max_abs_diff']:.1e}, text embeddings {c['text_max_abs_diff']:.1e}"
            )
    return 0


def cmd_export_hf(ns: argparse.Namespace) -> int:
    from ..export.hf import export_hf

    out = export_hf(ns.checkpoint, ns.out, name=ns.repo, license=ns.license)
    print(f"wrote a Hugging Face model repo (weights, config, tokenizer, model card) to {out}")
    print(f"publish it: hf upload {shlex.quote(ns.repo or 'ORG/NAME')} {shlex.quote(str(out))} .")
    return 0


def cmd_serve(ns: argparse.Namespace) -> int:
    from ..serve.server import serve_from_arguments  # no torch for an ONNX export folder

    return serve_from_arguments(ns)


def add_export(sub: Subparsers) -> None:
    """The ``export`` command's parser and its ``onnx`` and ``hf`` parsers."""
    x = sub.add_parser(
        "export", help="export a checkpoint for deployment (ONNX) or the Hugging Face Hub (hf)"
    )
    xsub = x.add_subparsers(dest="export_format", required=True)
    xo = xsub.add_parser(
        "onnx", help="image and text encoders as ONNX graphs + tseg_onnx.json (needs [onnx])"
    )
    xo.add_argument("checkpoint", help="a checkpoint folder or a run folder")
    xo.add_argument("--out", type=out_path, required=True, help="output folder")
    xo.add_argument(
        "--no-check", action="store_true", help="skip comparing ONNX Runtime with torch"
    )
    xo.add_argument(
        "--precision",
        choices=("fp32", "int8"),
        default="fp32",
        help="int8: the graphs' MatMul weights quantized after exporting (ONNX Runtime's dynamic "
        "quantization), checked against torch by cosine (default %(default)s)",
    )
    xo.set_defaults(func=cmd_export)
    xh = xsub.add_parser(
        "hf",
        help="a Hugging Face model repo folder: model.safetensors, config, tokenizer, model card "
        "(push it with `hf upload`; load it with tseg segment/eval ORG/NAME)",
    )
    xh.add_argument("checkpoint", help="a checkpoint folder or a run folder")
    xh.add_argument("--out", type=out_path, required=True, help="output folder")
    xh.add_argument("--repo", help="the repo name ORG/NAME the model card uses")
    xh.add_argument(
        "--license", default="apache-2.0", help="licence id for the card (default %(default)s)"
    )
    xh.set_defaults(func=cmd_export_hf)


def add_serve(sub: Subparsers) -> None:
    """The ``serve`` command's parser; its flags come from ``tseg.serve.options`` (standard
    library only)."""
    from ..serve.options import add_arguments as add_serve_arguments

    sv = sub.add_parser("serve", help="a web page and JSON API: image + expressions -> masks")
    add_serve_arguments(sv)
    sv.set_defaults(func=cmd_serve)
