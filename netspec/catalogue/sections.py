"""The section tables: every key of the `data:`, `train:` and `export:` sections, with its
type, default, help and domain.

In: `SettingSpec` (types.py). Out: `DATA_SETTINGS`, `TRAIN_SETTINGS`, `EXPORT_SETTINGS`,
`SEARCH_SETTINGS` (the fixed keys of `search`; its other keys are `let` names and `--set`
paths, with a distribution from `SEARCH_DISTRIBUTIONS`), `SECTIONS` (section name -> its
settings) and `LOGS` (the `log:` destinations), read by the checker (checker/sections.py,
checker/search.py), the trainer's defaults and the docs. Imports no torch.
"""

from __future__ import annotations

from netspec.catalogue.types import SettingSpec

DATA_SETTINGS = [
    SettingSpec("train", "source", None, "training data source"),
    SettingSpec("test", "source", None, "test data source"),
    SettingSpec("validation", "float", 0.0, "fraction of train held out for validation (seeded)", "[0,1)"),
    SettingSpec("split", "floats?", None, "[train, validation, test] fractions of one source"),
    SettingSpec("stratify", "bool", False, "validation/split keep each class's share of the samples"),
    SettingSpec("normalize", "choice(standard,minmax,none)", "none", "input scaling; statistics from train only"),
    SettingSpec("normalize_target", "choice(standard,minmax,none)?", None,
                "regression targets scaled for the loss (training statistics); metrics, predictions and exports "
                "stay in the target's units"),
    SettingSpec("batch_size", "int|choice(full)", 32, "samples per step (global under DDP), or `full`", "[1,inf)"),
    SettingSpec("shuffle", "bool", True, "reshuffle training data every epoch"),
    SettingSpec("one_hot", "bool", False, "turn class labels into one-hot rows (width: the class count)"),
    SettingSpec("target_type", "choice(auto,class,value)", "auto", "class labels or regression values"),
    SettingSpec("target", "choice(input)?", None, "`input`: the targets are the preprocessed inputs (autoencoders)"),
    SettingSpec("labels", "any", None, "class names, for predictions"),
    SettingSpec("subset", "int?", None, "train on N samples of the training source, drawn at random (seeded)",
                "[1,inf)"),
    SettingSpec("image_size", "int|ints?", None, "decode images to [height, width] (default: the model input's)",
                "[1,inf)"),
    SettingSpec("augment", "augments", (), "training-batch augmentation, torchvision's names"),
    SettingSpec("skip_bad", "bool", False, "skip unreadable images with a warning instead of stopping"),
    SettingSpec("tokenizer", "tokenizer?", None, "how text columns become tokens: words(...), chars(...), "
                "bpe(vocab_size=...) (default words())"),
    SettingSpec("max_len", "int?", None, "longest text in tokens; longer ones are cut (default: the longest "
                "training text)", "[1,inf)"),
    SettingSpec("bucket", "bool", False, "training batches of texts of similar length (seeded; less padding)"),
]
TRAIN_SETTINGS = [
    SettingSpec("loss", "loss", "MSELoss", "torch.nn loss class"),
    SettingSpec("optimizer", "optimizer", "SGD(lr=0.01)", "torch.optim class"),
    SettingSpec("scheduler", "scheduler?", None, "torch.optim.lr_scheduler class"),
    SettingSpec("epochs", "int", 1, "passes over the training data", "[1,inf)"),
    SettingSpec("metrics", "metrics", (), "metrics reported every epoch"),
    SettingSpec("early_stopping", "early_stopping?", None, "EarlyStopping(monitor, patience, min_delta, mode)"),
    SettingSpec("l1", "float", 0.0, "extra L1 penalty on weights", "[0,inf)"),
    SettingSpec("clip_grad_norm", "float?", None, "clip the gradient norm", "(0,inf)"),
    SettingSpec("seed", "int", 0, "seed for initialisation, splits, shuffling, dropout, augmentation",
                "[0,inf)"),
    SettingSpec("device", "str", "auto", "auto | cpu | cuda | cuda:N | mps"),
    SettingSpec("precision", "choice(fp32,bf16,fp16)", "fp32", "autocast precision (fp16 with loss scaling)"),
    SettingSpec("compile", "bool", False, "torch.compile, after checking its gradients against eager"),
    SettingSpec("sync_batchnorm", "bool", True, "under DDP: BatchNorm statistics across processes"),
    SettingSpec("checkpoint_every", "int", 1, "epochs between checkpoints", "[1,inf)"),
    SettingSpec("save", "choice(best,last)", "best", "which epoch's weights model.pt holds"),
    SettingSpec("log", "logs", ("csv",), "where metrics go: csv (metrics.csv), tensorboard"),
    SettingSpec("log_every", "int", 50, "steps between step-level log entries (tensorboard)", "[1,inf)"),
]
EXPORT_SETTINGS = [
    SettingSpec("onnx", "str?", None, "output path of the ONNX file"),
    SettingSpec("opset", "int", 18, "ONNX opset version", "[9,23]"),
    SettingSpec("tolerance", "float", 1e-4, "max torch vs onnxruntime difference (relative where |output| > 1)",
                "(0,inf)"),
    SettingSpec("quantize", "choice(none,int8)", "none",
                "int8: also write NAME.int8.onnx, statically quantized (dynamic for recurrent/attention models)"),
    SettingSpec("calibration", "int", 512, "training samples (drawn with train.seed) that calibrate int8 ranges",
                "[1,inf)"),
    SettingSpec("max_metric_drop", "float", 0.01,
                "refuse the int8 model when its test metric is worse than fp32's by more (losses/errors: a "
                "fraction of fp32's)", "[0,inf)"),
]
SEARCH_SETTINGS = [
    SettingSpec("trials", "int", 20, "trials that finish (complete, pruned or failed); `--trials` overrides",
                "[1,inf)"),
    SettingSpec("metric", "str?", None, "the reported value to optimise (default: the run's monitor, val_loss); "
                "loss-like ones are minimised"),
    SettingSpec("sampler", "choice(tpe,random,grid)", "tpe", "how the next trial's values are picked"),
    SettingSpec("pruner", "choice(none,median,hyperband)", "none", "stops weak trials early on each epoch's metric"),
]
# The distributions a search key takes: name -> (arguments, meaning), for the checker and the docs.
SEARCH_DISTRIBUTIONS = {
    "choice": ("v1, v2, ...", "one of the values as written (numbers, strings, names, calls, lists)"),
    "uniform": ("low, high", "a float drawn uniformly from [low, high]"),
    "loguniform": ("low, high", "a float drawn uniformly on a log scale from [low, high]; 0 < low"),
    "int": ("low, high, step=1", "an integer low, low + step, ..., high"),
}
SECTIONS = {"data": DATA_SETTINGS, "train": TRAIN_SETTINGS, "export": EXPORT_SETTINGS, "search": SEARCH_SETTINGS}
LOGS = ("csv", "tensorboard")
