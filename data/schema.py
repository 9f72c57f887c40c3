"""The DPL schema: what a row must hold before any of it reaches a prompt."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Review(BaseModel):
    """One review: `title` is the review's own title, not the item's."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    asin: str = Field(min_length=1)
    title: str
    text: str = Field(min_length=1)
    rating: float = Field(ge=0, le=5)
    timestamp: int

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("review text is blank")
        return value


class Item(BaseModel):
    """Item metadata (meta rows)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    asin: str = Field(min_length=1)
    title: str
    description: str = ""


class UserRow(BaseModel):
    """A main row: the user's earlier reviews (`profile`) and the target review (`data`)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    user_id: str = Field(min_length=1)
    profile: list[Review]
    data: Review
