"""Zoo specs: one validated source of truth per zoo and profile.

A zoo is a grid ``load × temperature × seed`` of training runs that share every other setting.
Each zoo is one YAML file in ``phasezoo/zoos/`` (files whose name starts with ``_`` are shared
bases, pulled in with ``extends:``). A file holds the fixed settings (task, architecture,
dataset, training) and named *profiles* (``paper``, ``mini``, ``smoke``), each giving the grid
and optional overrides of the training settings. Loading validates every value and returns
frozen dataclasses; :meth:`ZooSpec.members` expands the grid into :class:`MemberSpec` objects,
the exact configuration of one training run, which is what ``config.json`` stores.

Schema (all keys are checked; unknown keys are errors; every number is range-checked, and every
batch size is at least 2, since BatchNorm cannot normalise a single sample)::

    name: cifar10-resnet18          # defaults to the file name; [a-z0-9][a-z0-9._-]* (a folder)
    description: one line
    extends: _resnet-table2.yaml    # optional base file, merged key by key (this file wins)
    task: classification | language_modelling | pde_convection
    arch: resnet18 | resnet50 | vit | gpt | pinn
    dataset: cifar10
    model: {depth: 6, heads: 3}     # optional architecture settings; {width: 50} fixes the
                                    # width when it is not a grid axis (PINNs)
    axes: {load: width, temperature: batch_size}   # grid keys: width | model_dim (the width
                                    # of a transformer) | beta (PDE coefficient) | batch_size | lr
    axis_directions: {load: decreasing, temperature: decreasing}   # how load and temperature
                                    # change as the axis value grows (defaults: AXIS_DIRECTIONS)
    training:
      optimizer: sgd | adamw | lbfgs
      lr: 0.1                       # the fixed rate when lr is not a grid axis
      batch_size: 128 | full        # the fixed batch size when it is not a grid axis
      momentum: 0.9                 # sgd only
      weight_decay: 5.0e-4
      lbfgs: {max_iter: 1000, history_size: 50, line_search: strong_wolfe}   # lbfgs only; one
                                    # epoch is one optimizer.step() of up to max_iter iterations
      scheduler: {name: onecycle_cosine, pct_start: 0.3, div_factor: 25, final_div_factor: 1.0e4}
                                    # 0 < pct_start < 1; both factors > 0
      epochs: 150
      init: kaiming_uniform
      augmentation: {random_crop: {padding: 4}, hflip: true, rotation: 20}
      checkpoints: {every: 5}       # or {at: [0, 1, 2, 5, ...]}; 0, the last epoch and Wise-FT's
                                    # early epoch (WISE_FT_EARLY_FRACTION of training) always;
                                    # {only: [...]}: exactly these (a zoo imported from elsewhere)
    metrics:                        # loss-landscape metric settings (defaults: METRIC_DEFAULTS)
      hessian: {num_batches: 10, batch_size: 64, seed: 0,
                eig_method: lanczos, max_iter: 100, tol: 1.0e-3,      # eigenvalue: lanczos | power
                trace_method: hutchpp, rel_stderr: 0.05, min_probes: 10, trace_max_iter: 300}
      cka: {batch_size: 128, num_batches: 10, chance_seed: 0}
      mode_connectivity: {optimizer: sgd, epochs: 10, lr: 0.1, momentum: 0.9, weight_decay: 0.0,
                          batch_size: 128, num_t: 5, seed: 0,        # optimizer: sgd | adam
                          plateau_tol: 0.1, min_steps: 200}          # the convergence rule
    downstream:                     # downstream settings (defaults: DOWNSTREAM_DEFAULTS)
      prune: {sparsities: [0.5, 0.7, 0.9, 0.95, 0.99], finetune_epochs: 1, lr: 0.01, batch_size: 128}
      finetune: {target: digits-rot90, epochs: 3, batch_size: 128}
    phases: {mc_metric: mc_error}   # optional fixed thresholds (train_loss, hessian_trace, mc,
                                    # cka) and mc_reference (chord | mean); unset: calibrated
    profiles:
      paper: {description: one line, grid: {width: [...], batch_size: [...], seed: [0, 1, 2]}}
      mini:  {grid: {...}, training: {epochs: 15}}    # training, metrics, downstream and phases
                                                      # overrides merge key by key
"""

from .load import STORED_SPEC, list_zoos, load_spec, spec_from_mapping, stored_spec_path, zoo_dir
from .schema import (AXIS_DIRECTIONS, DOWNSTREAM_DEFAULTS, GRID_LABELS, INITS, LBFGS_DEFAULTS,
                     METRIC_DEFAULTS, MIN_BATCH_SIZE, OPTIMIZERS, PROFILES, REAL_GRID_KEYS, SCHEDULERS,
                     TASKS, WISE_FT_EARLY_FRACTION, ZOO_NAME, MemberSpec, ProfileSpec, TrainingSpec,
                     ZooSpec, by_cell, cell_of, member_name, plan_json, wise_ft_early_epoch)

__all__ = ["AXIS_DIRECTIONS", "DOWNSTREAM_DEFAULTS", "GRID_LABELS", "INITS", "LBFGS_DEFAULTS",
           "METRIC_DEFAULTS", "MIN_BATCH_SIZE", "OPTIMIZERS", "PROFILES", "REAL_GRID_KEYS", "SCHEDULERS",
           "TASKS", "WISE_FT_EARLY_FRACTION", "ZOO_NAME", "MemberSpec", "ProfileSpec", "TrainingSpec",
           "STORED_SPEC", "ZooSpec", "by_cell", "cell_of", "list_zoos", "load_spec", "member_name", "plan_json",
           "spec_from_mapping", "stored_spec_path", "wise_ft_early_epoch", "zoo_dir"]
