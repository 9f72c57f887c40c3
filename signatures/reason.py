import dspy

# RRP's hierarchical thought template as typed fields, filled in order: the user's traits from the retrieved
# reviews, a plan for this item, then the review. A check rejects an answer that leaves a level out (the stage
# retries it), and a second pass cross-references the draft with the same reviews before it is final.


class ReasonedReview(dspy.Signature):
    """You are a customer who bought this item and now write your review of it, to be posted under the rating
    and the review title you gave it. Reason in three levels, in order, filling each before the next. First,
    your traits: what you care about and how you write (length, tone, vocabulary, habits), each drawn from your
    past reviews and naming the review it comes from, e.g. (Review 2). Second, your plan for this item: which
    of those traits apply to it, what you will say given your rating, and how long the review will be. Third,
    the review itself, following the plan, in the first person, as you would post it."""

    past_reviews: str = dspy.InputField(desc="your past reviews, numbered, most relevant first")
    item: str = dspy.InputField(desc="title and description of the item you review")
    rating: float = dspy.InputField(desc="your rating of the item, 1 to 5")
    review_title: str = dspy.InputField(desc="the title you gave your review")
    user_traits: str = dspy.OutputField(desc="level 1: your traits as a reviewer, each citing a past review by number")
    item_plan: str = dspy.OutputField(desc="level 2: the plan for this review, from your traits and your rating")
    review: str = dspy.OutputField(desc="level 3: your review's text, in your own voice, following the plan")


class CrossCheckReview(dspy.Signature):
    """You are a customer about to post the draft of your review of this item. Cross-check it against your own
    past reviews first: list each place where the draft departs from them (a trait it ignores, a length, tone
    or habit unlike yours, a claim your rating or past reviews contradict). Then write the final review: the
    draft revised to remove each of them, or the draft itself if there is none."""

    past_reviews: str = dspy.InputField(desc="your past reviews, numbered, most relevant first")
    item: str = dspy.InputField(desc="title and description of the item you review")
    rating: float = dspy.InputField(desc="your rating of the item, 1 to 5")
    review_title: str = dspy.InputField(desc="the title you gave your review")
    user_traits: str = dspy.InputField(desc="your traits as a reviewer, from your past reviews")
    draft: str = dspy.InputField(desc="the draft of your review")
    inconsistencies: list[str] = dspy.OutputField(
        desc="where the draft departs from your past reviews; empty if nowhere")
    review: str = dspy.OutputField(desc="your final review's text, in your own voice")
