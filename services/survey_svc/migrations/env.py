from survey_svc.models import Base
from shared.db.migrations import run_env

run_env(Base.metadata)
