# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The zoos and their hyper-parameters
#
# The paper's Tables 2–4, generated from the zoo specifications in `src/phasezoo/zoos/`
# (nothing here is typed by hand): first the paper-scale profile of every zoo, then the profile
# this book was built with, then the phase thresholds of that profile.

# %% tags=["parameters"]
zoos = ["digits-resnet18", "digits-vit", "text-gpt", "convection-pinn"]
profile = "mini"
root = "data/zoos"

# %%
import pandas as pd
from IPython.display import Markdown, display

from phasezoo.analysis.report import HYPERPARAMETER_TABLES, hyperparameter_table
from phasezoo.spec import list_zoos, load_spec

pd.set_option("display.max_colwidth", None)
every_zoo = [load_spec(z) for z in list_zoos()]
built = [load_spec(z) for z in zoos]

# %% [markdown]
# ## The paper-scale profiles (Tables 2–4)
#
# One table per domain; one column per zoo. `load` and `temperature` name the grid axis and
# its values; the members are the product of load, temperature and seeds.

# %%
for task, title in HYPERPARAMETER_TABLES.items():
    table = hyperparameter_table([s for s in every_zoo if s.task == task], "paper")
    if not table.empty:
        display(Markdown(f"**{title}**"))
        display(table)

# %% [markdown]
# ## The profile this book was built with

# %%
hyperparameter_table(built, profile)

# %% [markdown]
# ## Phase settings of this profile
#
# A cell is rugged when its train loss or Hessian trace reaches the threshold; its seeds are
# separated by a barrier when `mc` (the named metric, referenced as named) is below −τ_mc; phase
# IV splits at the CKA threshold (see the taxonomy chapter). "calibrated": the threshold comes
# from the zoo's own training-side metrics by the one rule of the taxonomy chapter; the values
# in effect are printed on each zoo's phase page.

# %%
pd.DataFrame({s.name: {k: "calibrated" if v is None else v for k, v in s.profile(profile).phases.to_dict().items()}
              for s in built}).T
