from __future__ import annotations

import pandas as pd
import pytest
from trainingkit import clustered_interactions


@pytest.fixture(scope="session")
def clustered() -> pd.DataFrame:
    return clustered_interactions()
