import dspy

# Both instructions speak to the model as the customer. Asked to write "the review the current user would write",
# the 1.5B CPU model answered the user as a shop assistant ("I'm sorry to hear that you didn't enjoy...") or
# refused; asked to write its own review, it writes one (README, issue 10's measurements).

REVIEW_DOCUMENT = "Amazon reviews, all written by the same customer."
"""The heading of the document that Generate continues with `past_reviews="document"`: the user's past reviews,
then the target's item, rating and title, open after "Review:"."""


class GenerateReview(dspy.Signature):
    """You are a customer who bought this item and now write your review of it, to be posted under the rating
    and the review title you gave it. Your past reviews and your profile summary, where given, show how you
    write: match their length, tone, vocabulary and habits. Write the review text only, in the first person,
    as you would post it: your own review, not a reply to anyone."""

    # past reviews first: Summarize reads them first too, so the two calls share a cached prompt prefix
    past_reviews: str = dspy.InputField(desc="your past reviews, most relevant first")
    item: str = dspy.InputField(desc="title and description of the item you review")
    profile_summary: str = dspy.InputField(desc="how you write and what you care about")
    rating: float = dspy.InputField(desc="your rating of the item, 1 to 5")
    review_title: str = dspy.InputField(desc="the title you gave your review")
    review: str = dspy.OutputField(desc="your review's text, in your own voice")


class GenerateContrastiveReview(dspy.Signature):
    """You are a customer who bought this item and now write your review of it, to be posted under the rating
    and the review title you gave it. The contrast examples pair your own reviews of some items (write like
    these) with other customers' reviews of the same items (do not write like these): match what sets you apart
    in length, tone, vocabulary and habits. Write the review text only, in the first person, as you would post
    it: your own review, not a reply to anyone."""

    past_reviews: str = dspy.InputField(desc="your past reviews, most relevant first")
    item: str = dspy.InputField(desc="title and description of the item you review")
    contrast_examples: str = dspy.InputField(
        desc="per item, your review (write like this) and other customers' reviews of it (not like these)"
    )
    rating: float = dspy.InputField(desc="your rating of the item, 1 to 5")
    review_title: str = dspy.InputField(desc="the title you gave your review")
    review: str = dspy.OutputField(desc="your review's text, in your own voice")
