"""Handlers whose arguments a framework converts by their annotations (pydantic/FastAPI
style): the fix changes annotations only, the bodies are the same."""
import functools


def transfer(amount: int, to: str, *, memo: str = "") -> dict:
    return {"amount": amount, "to": to, "memo": memo}


@functools.lru_cache(maxsize=None)
def refund(amount: int) -> dict:
    return {"refund": amount}


class Account:
    Cents = int

    def withdraw(self, amount: Cents) -> "Account":
        self.last = amount
        return self.last

    @staticmethod
    def parse(raw: "Account.Cents") -> int:
        return raw
