from dataclasses import dataclass


@dataclass
class Base:
    limit: int = 10


@dataclass
class Child(Base):
    name: str = "child"
