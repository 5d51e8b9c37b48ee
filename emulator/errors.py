"""The error every emulated Salesforce operation raises, carrying Salesforce's own status, code and wording."""


class SalesforceError(Exception):
    """status_code: HTTP status of a single-record call; error_code: Salesforce's errorCode/statusCode.

    `matches` is set only for HTTP 300 (an external id matched several records): their Ids.
    """

    def __init__(self, status_code: int, error_code: str, message: str, fields=(), matches=None):
        super().__init__(f"{error_code}: {message}")
        self.status_code = status_code
        self.error_code = error_code
        self.message = message
        self.fields = None if fields is None else list(fields)     # None: the body has no "fields" key
        self.matches = matches
        self.extra: dict = {}      # more keys of the error body, e.g. DUPLICATES_DETECTED's duplicateResult

    def envelope(self) -> list[dict]:
        """The REST single-call body: [{"message", "errorCode", "fields"}]."""
        body = {"message": self.message, "errorCode": self.error_code}
        if self.fields is not None:
            body["fields"] = self.fields
        return [{**self.extra, **body}]

    def item_error(self) -> dict:
        """The error inside sObject Collections results, which says statusCode instead of errorCode."""
        return {**self.extra, "statusCode": self.error_code, "message": self.message, "fields": self.fields or []}


class NotFound(SalesforceError):
    def __init__(self, message: str = "The requested resource does not exist"):
        super().__init__(404, "NOT_FOUND", message, fields=None)
