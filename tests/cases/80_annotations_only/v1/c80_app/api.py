"""Handlers whose arguments a framework converts by their annotations (pydantic/FastAPI
style): the fix changes annotations only, the bodies are the same."""
import functools


def transfer(amount: float, to: str, *, memo: str = "") -> dict:
    return {"amount": amount, "to": to, "memo": memo}


@functools.lru_cache(maxsize=None)
def refund(amount: float) -> dict:
    return {"refund": amount}


class Account:
    Cents = int

    def withdraw(self, amount: float) -> "Account":
        self.last = amount
        return self.last

    @staticmethod
    def parse(raw: float) -> float:
        return raw
